"""Graph-level cascade step (seed: identity connectivity): a clip whose face lands in a different identity
community than the other clips filed under the same person is rejected (an impostor, a mislabelled upload, a
guest speaker).

Uses only the corpus' claimed identity (the manifest's `identity`, e.g. a channel or folder name for ingested
footage); when a corpus has no claim the step is skipped. The measured value is the share of the claimed
identity's other clips that fall in this clip's community.
"""

from __future__ import annotations

import pandas as pd

NAME = "identity"


def consistency(clips: pd.DataFrame, claimed: dict[str, str]) -> dict[str, float]:
    """clip id → share of same-claim peers (in the graph) inside the clip's community; NaN without peers."""
    g = clips[clips["identity_pred"] != ""]
    pred = dict(zip(g["clip_id"], g["identity_pred"]))
    by_claim: dict[str, list[str]] = {}
    for c in pred:
        if claimed.get(c):
            by_claim.setdefault(claimed[c], []).append(c)
    out: dict[str, float] = {}
    for c, mine in pred.items():
        peers = [p for p in by_claim.get(claimed.get(c, ""), []) if p != c]
        out[c] = sum(pred[p] == mine for p in peers) / len(peers) if peers else float("nan")
    return out
