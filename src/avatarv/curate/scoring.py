"""Scoring the curation against the corpus' ground truth (synthetic corpus only; ingested footage has none).

- per distractor kind: recall (share rejected) and reason recall (rejected by the stage meant to catch it);
- clean clips: false-rejection rate;
- AV offset: share of measured clips whose predicted offset is within ±1 frame of the true one;
- identity graph: pairwise precision / recall over clips in the graph, and purity of the communities;
- pairs: precision = share of (ref, target) pairs that truly show one person in two different scenes.
The "true" person of a wrong_identity clip is the impostor named in its flags.
"""

from __future__ import annotations

import json
from collections import Counter
from itertools import combinations

import numpy as np
import pandas as pd

# The cascade stage meant to catch each distractor kind of the corpus contract.
EXPECTED_STAGE = {
    "scene_cut": {"scene_cut"}, "no_face": {"face_count"}, "two_faces": {"face_count"}, "av_offset": {"sync"},
    "silence": {"speech"}, "noise_audio": {"speech"}, "blur": {"quality"}, "low_res": {"quality", "face_size", "container"},
    "truncated": {"container"}, "no_audio": {"container"}, "wrong_identity": {"identity"},
}
_IMPOSTOR_KEYS = ("impostor", "impostor_identity", "shown_identity", "face_identity", "true_identity")


def has_ground_truth(manifest: pd.DataFrame | None) -> bool:
    """True for a synthetic corpus; False without a manifest or when every row is real footage
    (`has_ground_truth` False, as `avatarv ingest` writes)."""
    if manifest is None or not {"distractor", "identity", "scene_key"} <= set(manifest.columns):
        return False
    return bool(manifest["has_ground_truth"].any()) if "has_ground_truth" in manifest else True


def true_face_identity(row) -> str:
    """The person actually on screen: the claimed identity, or the impostor for wrong_identity clips."""
    if row.get("distractor") == "wrong_identity":
        try:
            flags = json.loads(row.get("flags") or "{}")
        except (TypeError, json.JSONDecodeError):
            flags = {}
        for k in _IMPOSTOR_KEYS:
            if flags.get(k):
                return str(flags[k])
        return f"{row['identity']}?impostor"
    return str(row["identity"])


def _pairwise(pred: list[str], true: list[str]) -> tuple[float, float]:
    tp = fp = fn = 0
    for i, j in combinations(range(len(pred)), 2):
        same_p, same_t = pred[i] == pred[j], true[i] == true[j]
        tp += same_p and same_t
        fp += same_p and not same_t
        fn += same_t and not same_p
    precision = tp / (tp + fp) if tp + fp else 1.0
    recall = tp / (tp + fn) if tp + fn else 1.0
    return precision, recall


def score(clips: pd.DataFrame, manifest: pd.DataFrame, pairs: pd.DataFrame) -> dict:
    if "has_ground_truth" in manifest:  # a mixed corpus: score only the clips that carry ground truth
        manifest = manifest[manifest["has_ground_truth"].astype(bool)]
        clips = clips[clips["clip_id"].isin(set(manifest["clip_id"]))]
    clips = clips[clips["clip_id"].isin(set(manifest["clip_id"]))]  # split-off shots have no ground truth
    m = manifest.set_index("clip_id")
    df = clips.join(m[["distractor", "identity", "scene_key", "av_offset_frames", "flags"]
                      if "flags" in m else ["distractor", "identity", "scene_key", "av_offset_frames"]], on="clip_id")
    df["distractor"] = df["distractor"].fillna("")
    failed_stages = df["all_reasons"].map(lambda s: {r.split(":")[0] for r in json.loads(s)})
    out: dict = {"per_kind": {}}
    for kind, grp in df[df["distractor"] != ""].groupby("distractor"):
        expected = EXPECTED_STAGE.get(kind, set())
        out["per_kind"][kind] = {
            "n": len(grp), "recall": float((~grp["kept"]).mean()),
            "reason_recall": float(np.mean([bool(expected & failed_stages[i]) for i in grp.index])),
        }
    recalls = [v["recall"] for v in out["per_kind"].values()]
    out["min_kind_recall"] = float(min(recalls)) if recalls else float("nan")
    clean = df[df["distractor"] == ""]
    out["n_clean"] = len(clean)
    out["clean_false_rejection"] = float((~clean["kept"]).mean()) if len(clean) else float("nan")
    out["clean_rejections_by_stage"] = clean.loc[~clean["kept"], "stage"].value_counts().to_dict()
    measured = df[df["av_offset_pred"].notna()]
    err = (measured["av_offset_pred"] - measured["av_offset_frames"].fillna(0)).abs()
    out["av_offset_accuracy"] = float((err <= 1).mean()) if len(measured) else float("nan")
    off = measured[measured["distractor"] == "av_offset"]
    out["av_offset_accuracy_on_offset_clips"] = float((err[off.index] <= 1).mean()) if len(off) else float("nan")
    out["n_av_measured"] = len(measured)

    df["true_person"] = [true_face_identity(r) for r in df.to_dict("records")]
    g = df[df["identity_pred"] != ""]
    p, r = _pairwise(list(g["identity_pred"]), list(g["true_person"]))
    purity = sum(Counter(grp["true_person"]).most_common(1)[0][1] for _, grp in g.groupby("identity_pred")) / max(len(g), 1)
    out["identity"] = {"n_clips": len(g), "pairwise_precision": p, "pairwise_recall": r, "purity": float(purity),
                       "n_communities": int(g["identity_pred"].nunique()), "n_true_people": int(g["true_person"].nunique())}
    person, scene = dict(zip(df["clip_id"], df["true_person"])), dict(zip(df["clip_id"], df["scene_key"]))
    pairs = pairs[pairs["ref_clip_id"].isin(person) & pairs["target_clip_id"].isin(person)] if len(pairs) else pairs
    if len(pairs):
        good = [person[a] == person[b] and scene[a] != scene[b] for a, b in zip(pairs["ref_clip_id"], pairs["target_clip_id"])]
        out["pair_precision"] = float(np.mean(good))
    else:
        out["pair_precision"] = float("nan")
    out["n_pairs"] = len(pairs)
    # pair recall: of all true cross-scene same-person ordered pairs among clean clips, how many were produced
    cl = clean[["clip_id"]].assign(person=clean["identity"].astype(str), scene=clean["scene_key"])
    possible = sum(len(grp) ** 2 - sum(n**2 for n in grp["scene"].value_counts()) for _, grp in cl.groupby("person"))
    out["pair_recall_clean"] = float(len(pairs) * out["pair_precision"] / possible) if possible and len(pairs) else 0.0
    return out
