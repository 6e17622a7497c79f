"""Reference → target training pairs (seed: "two clips are linked if same person, different scene, long
enough to capture motion patterns").

Inside each identity community, clips are grouped into scenes by background similarity (connected components
of pairs whose background histograms intersect above `max_background_similarity`); every ordered pair of
long-enough clips from two different scene groups becomes a (reference, target) pair.
"""

from __future__ import annotations

import networkx as nx
import pandas as pd

from ..config import CurateConfig
from .clip_features import background_similarity

PAIR_COLUMNS = ["ref_clip_id", "ref_path", "target_clip_id", "target_path", "identity_pred", "ref_scene",
                "target_scene", "face_similarity", "background_similarity"]


def scene_groups(members: list[str], bg: dict[str, list[float]], threshold: float) -> dict[str, int]:
    """clip id → scene index within one identity (connected components of background-similar clips)."""
    import numpy as np

    g = nx.Graph()
    g.add_nodes_from(members)
    for i, a in enumerate(members):
        for b in members[i + 1 :]:
            if background_similarity(np.asarray(bg[a]), np.asarray(bg[b])) >= threshold:
                g.add_edge(a, b)
    comps = sorted(sorted(c) for c in nx.connected_components(g))
    return {clip: k for k, comp in enumerate(comps) for clip in comp}


def make_pairs(clips: pd.DataFrame, cfg: CurateConfig) -> tuple[pd.DataFrame, dict[str, str]]:
    """(pairs table, clip id → predicted scene label) from the kept clips with an identity."""
    import numpy as np

    kept = clips[clips["kept"] & (clips["identity_pred"] != "")]
    kept = kept[kept["duration_s"] >= cfg.min_pair_seconds]
    rows, scene_of = [], {}
    for ident, grp in kept.groupby("identity_pred", sort=True):
        members = sorted(grp["clip_id"])
        by_id = grp.set_index("clip_id")
        bg = {c: by_id.at[c, "background_hist"] for c in members}
        groups = scene_groups(members, bg, cfg.max_background_similarity)
        scene_of.update({c: f"{ident}/s{k}" for c, k in groups.items()})
        for ref in members:
            for tgt in members:
                if ref == tgt or groups[ref] == groups[tgt]:
                    continue
                e_ref, e_tgt = np.asarray(by_id.at[ref, "face_embedding"]), np.asarray(by_id.at[tgt, "face_embedding"])
                rows.append([ref, by_id.at[ref, "path"], tgt, by_id.at[tgt, "path"], ident, scene_of[ref], scene_of[tgt],
                             float(e_ref @ e_tgt), background_similarity(np.asarray(bg[ref]), np.asarray(bg[tgt]))])
    return pd.DataFrame(rows, columns=PAIR_COLUMNS), scene_of
