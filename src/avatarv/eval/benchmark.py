"""The fixed, versioned cross-scene benchmark split (seed: identity must not depend on the scene — "same person
even though the background, lighting, and camera angle are completely different").

Rule (versions `cross_scene_v1`, 4 cases, and `cross_scene_v2`, 6 cases, on the tiny profile): only held-out
identities (manifest split 'holdout', never trained on), only clean clips; each case takes its reference from one
scene and the audio + real target video from another scene of the same person. Cases are chosen round-robin over
identities and scene pairs in sorted order (no randomness), up to `n_cases`. The split is written to
reports/benchmark/<version>.json with a fingerprint of the manifest rows it used; a later run with the same version
refuses a corpus whose fingerprint differs instead of silently changing.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from pathlib import Path

import pandas as pd

from ..errors import InputError
from ..paths import REPORTS

RULE = ("held-out identities; clean clips; reference from scene a, audio + real target from scene b != a; "
        "round-robin over identities then scene pairs, sorted")


def benchmark_path(version: str) -> Path:
    return REPORTS / "benchmark" / f"{version}.json"


def _fingerprint(rows: pd.DataFrame) -> str:
    cols = ["clip_id", "identity", "scene", "text", "n_frames"]
    blob = rows[cols].sort_values("clip_id").to_csv(index=False).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def build_cases(manifest: pd.DataFrame, n_cases: int) -> list[dict]:
    need = {"clip_id", "path", "identity", "scene", "split", "distractor", "text", "duration"}
    missing = need - set(manifest.columns)
    if missing:
        raise InputError("manifest.parquet", f"missing columns {sorted(missing)}")
    clean = manifest[(manifest["split"] == "holdout") & (manifest["distractor"].fillna("") == "")]
    per_identity = []
    for ident, g in sorted(clean.groupby("identity"), key=lambda kv: kv[0]):
        scenes = {s: gg.sort_values("clip_id") for s, gg in g.groupby("scene")}
        pairs = []
        for a, b in itertools.permutations(sorted(scenes), 2):
            # reference clip c0 of scene a, target: a clip of scene b (rotate through b's clips across pairs)
            ref = scenes[a].iloc[0]
            tgt = scenes[b].iloc[len(pairs) % len(scenes[b])]
            pairs.append((ident, ref, tgt))
        if pairs:
            per_identity.append(pairs)
    cases = []
    for round_ in itertools.zip_longest(*per_identity):
        for item in round_:
            if item is None or len(cases) >= n_cases:
                continue
            ident, ref, tgt = item
            cases.append({
                "case_id": f"{ident}_r{int(ref['scene'])}_{tgt['clip_id'].split('_', 1)[1].replace('_', '')}",
                "identity": ident, "ref_clip_id": ref["clip_id"], "ref_path": ref["path"], "ref_scene": int(ref["scene"]),
                "target_clip_id": tgt["clip_id"], "target_path": tgt["path"], "target_scene": int(tgt["scene"]),
                "text": tgt["text"], "duration": float(tgt["duration"]),
            })
    return cases


def make_benchmark(corpus_dir: Path, version: str, n_cases: int, write: bool = True) -> dict:
    """Build (or re-check) the versioned split; returns the document with its cases."""
    corpus_dir = Path(corpus_dir)
    mpath = corpus_dir / "manifest.parquet"
    if not mpath.exists():
        raise InputError(mpath, "corpus manifest not found (run `avatarv synth` / stage 00_corpus)")
    manifest = pd.read_parquet(mpath)
    cases = build_cases(manifest, n_cases)
    if not cases:
        raise InputError(mpath, "no held-out identity has clean clips in two scenes; cannot build the benchmark")
    used = manifest[manifest["clip_id"].isin({c["ref_clip_id"] for c in cases} | {c["target_clip_id"] for c in cases})]
    doc = {"version": version, "rule": RULE, "n_cases": len(cases), "fingerprint": _fingerprint(used),
           "identities": sorted({c["identity"] for c in cases}), "cases": cases}
    path = benchmark_path(version)
    if path.exists():
        old = json.loads(path.read_text())
        if old.get("fingerprint") != doc["fingerprint"] or old.get("cases") != cases:
            raise InputError(path, f"benchmark {version} was built from a different corpus (fingerprint "
                             f"{old.get('fingerprint')} != {doc['fingerprint']}); bump eval.benchmark_version")
    elif write:
        from ..media import atomic_path

        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            Path(tmp).write_text(json.dumps(doc, indent=1))
    return doc
