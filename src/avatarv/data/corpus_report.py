"""Build the corpus for stage 00_corpus and describe it: contact sheet, lip-motion vs audio, distractor mix,
face-detector check, metrics. The notebook only calls these (house style: no logic in notebooks).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..config import Config
from .synthesize import CorpusSpec, read_manifest, synthesize_corpus


def spec_from_config(cfg: Config) -> CorpusSpec:
    c = cfg.corpus
    return CorpusSpec(
        identities=c.identities, scenes=c.scenes, clips_per_scene=c.clips_per_scene, seconds=c.seconds, size=c.size,
        seed=cfg.seed, fps=c.fps, sample_rate=c.sample_rate, distractor_fraction=c.distractor_fraction,
        languages=tuple(c.languages), holdout_identities=min(cfg.train.holdout_identities, c.identities - 1),
    )


def build_corpus(cfg: Config, out: str | Path, progress: bool = True) -> dict:
    """The stage's one action: synthesise the corpus, or ingest the user's footage when corpus.source is a folder."""
    if cfg.corpus.source == "synth":
        return synthesize_corpus(out, spec_from_config(cfg), workers=cfg.corpus.workers, progress=progress)
    from ..paths import ROOT
    from .ingest import ingest_folder

    src = Path(cfg.corpus.source)
    src = src if src.is_absolute() else ROOT / src
    return ingest_folder(src, out, fps=cfg.corpus.fps, sample_rate=cfg.corpus.sample_rate, size=cfg.corpus.size,
                         progress=progress)


def middle_frame(corpus_dir: str | Path, rel_path: str) -> np.ndarray | None:
    from ..errors import MediaError
    from ..media import read_video

    try:
        v = read_video(Path(corpus_dir) / rel_path)
    except MediaError:
        return None
    return v.frames[len(v.frames) // 2]


def contact_sheet(corpus_dir: str | Path, manifest, max_identities: int = 12, tile: int = 96) -> np.ndarray:
    """Identities (rows) × scenes (columns): the middle frame of each scene's first clean clip."""
    import cv2

    clean = manifest[manifest.distractor == ""]
    idents = sorted(clean.identity.unique())[:max_identities]
    scenes = sorted(clean.scene.unique())
    sheet = np.full((len(idents) * tile, len(scenes) * tile, 3), 255, np.uint8)
    for i, ident in enumerate(idents):
        for j, s in enumerate(scenes):
            rows = clean[(clean.identity == ident) & (clean.scene == s)].sort_values("clip_id")
            if not len(rows):
                continue
            f = middle_frame(corpus_dir, rows.iloc[0].path)
            if f is not None:
                sheet[i * tile : (i + 1) * tile, j * tile : (j + 1) * tile] = cv2.resize(f, (tile, tile), interpolation=cv2.INTER_AREA)
    return sheet


def lip_audio_correlation(manifest) -> list[float]:
    """Per clean clip: Pearson correlation of ground-truth mouth opening with per-frame audio RMS."""
    out = []
    for _, r in manifest[(manifest.distractor == "") & manifest.has_ground_truth].iterrows():
        mo, en = np.asarray(r.mouth_open, float), np.asarray(r.audio_energy, float)
        if len(mo) == len(en) and mo.std() > 0 and en.std() > 0:
            out.append(float(np.corrcoef(mo, en)[0, 1]))
    return out


def detector_check(corpus_dir: str | Path, manifest, n: int = 24, seed: int = 0) -> dict:
    """Share of sampled clean frames where MediaPipe and dlib each find exactly one face, and the dlib box size.

    Curation relies on these detectors, so the corpus is only useful if they see its faces.
    """
    from ..faces import detect_faces

    clean = manifest[(manifest.distractor == "")]
    if not len(clean):
        return {}
    pick = clean.sample(min(n, len(clean)), random_state=seed)
    mp_one = dl_one = 0
    sides = []
    for _, r in pick.iterrows():
        f = middle_frame(corpus_dir, r.path)
        if f is None:
            continue
        mp_one += len(detect_faces(f, "mediapipe")) == 1
        d = detect_faces(f, "dlib")
        dl_one += len(d) == 1
        sides += [b.side for b in d[:1]]
    k = len(pick)
    return {"frames": k, "mediapipe_one_face": mp_one / k, "dlib_one_face": dl_one / k,
            "dlib_face_side_px_min": float(min(sides)) if sides else 0.0,
            "dlib_face_side_px_mean": float(np.mean(sides)) if sides else 0.0}


def corpus_metrics(manifest, summary: dict, detect: dict) -> dict:
    clean = manifest[manifest.distractor == ""]
    corr = lip_audio_correlation(manifest)
    kinds = manifest[manifest.distractor != ""].distractor.value_counts().to_dict()
    return {
        "clips": len(manifest), "clean_clips": len(clean), "distractor_clips": int(len(manifest) - len(clean)),
        "distractor_kinds": {k: int(v) for k, v in sorted(kinds.items())},
        "identities": int(manifest.identity.nunique()),
        "photo_identities": int(manifest[manifest.identity_source.str.startswith("photo:")].identity.nunique()),
        "procedural_identities": int(manifest[manifest.identity_source == "procedural"].identity.nunique()),
        "scenes_per_identity": float(clean.groupby("identity").scene.nunique().mean()) if len(clean) else 0.0,
        "languages": sorted(manifest.language.unique().tolist()),
        "hours": round(float(manifest.duration.sum()) / 3600, 4),
        "lip_audio_corr_mean": round(float(np.mean(corr)), 4) if corr else 0.0,
        "lip_audio_corr_min": round(float(np.min(corr)), 4) if corr else 0.0,
        "seconds_build": summary.get("seconds", 0.0), "workers": summary.get("workers", 0),
        "detector": {k: round(v, 4) if isinstance(v, float) else v for k, v in detect.items()},
    }


def write_metrics(metrics: dict, path: str | Path) -> Path:
    path = Path(path)
    path.write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n")
    return path


__all__ = ["build_corpus", "contact_sheet", "corpus_metrics", "detector_check", "lip_audio_correlation",
           "read_manifest", "spec_from_config", "write_metrics"]
