"""Score a folder of generated clips against their references: every metric of the suite, per clip + aggregate.

Pairing: generated `NAME.mp4` ↔ reference `NAME.mp4|.png|.jpg` (same stem); a reference folder holding exactly
one file serves every generated clip. Lip sync uses the audio muxed into the generated clip (what a viewer
hears). Every clip and reference video, whatever its container, frame rate (23.976 ... 59.94, variable), rotation
or audio format, is first brought to the working rate by the media normaliser (media/normalize.py), so every
metric measures at 25 fps and 16 kHz. A clip that cannot be scored (unreadable, no audio, ...) becomes a row with
`error` and the batch goes on.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from ..errors import AvatarVError, InputError
from ..faces import track_face, track_landmarks
from ..media import WORKING_FPS, normalize_video
from . import identity, quality
from .drift import drift_metrics
from .motion_dynamics import mesh_style, mesh_style_similarity, motion_stats, style_similarity
from .mouth import mouth_metrics

VIDEO_EXT = (".mp4", ".mov", ".mkv", ".avi", ".webm")
IMAGE_EXT = (".png", ".jpg", ".jpeg")
HIGHER_IS_BETTER = {
    "sync_conf": True, "sync_conf_at_zero": True, "sync_lse_c": True, "sync_lse_d": False, "sync_abs_offset": False,
    "syncnet_lse_c": True, "syncnet_lse_d": False, "face_sim": True, "piqe": False, "niqe": False, "brisque": False, "qalign": True,
    "mouth_sharpness": True, "teeth_visibility": True, "lip_audio_corr": True, "head_motion_energy": None,
    "motion_style_sim": True, "motion_stream_style_sim": True, "drift_id_sim_min": True, "drift_delta_e_max": False,
}


@dataclass(kw_only=True)
class EvalSettings:
    sync_expert: str = ""  # save_pretrained folder of the in-repo expert ('' = skip)
    syncnet_weights: str = ""  # syncnet_v2.model ('' = skip)
    identity_backend: str = "dlib"
    arcface_onnx: str = ""
    qalign_weights: str = ""
    max_offset_frames: int = 8
    identity_frames: int = 8
    quality_frames: int = 4
    chunk_seconds: float = 2.0

    @classmethod
    def from_config(cls, cfg, **over) -> EvalSettings:
        e = cfg.eval
        kw = dict(syncnet_weights=e.syncnet_weights, arcface_onnx=e.arcface_onnx, qalign_weights=e.qalign_weights,
                  identity_backend="arcface" if e.arcface_onnx else "dlib", max_offset_frames=e.max_offset_frames)
        for k in ("identity_frames", "quality_frames", "chunk_seconds"):
            if hasattr(e, k):
                kw[k] = getattr(e, k)
        kw.update({k: v for k, v in over.items() if v is not None})
        return cls(**kw)

    def backends(self) -> dict[str, str]:
        from .sync_expert import BACKEND, OFFSET_SIGMA_FRAMES

        b = {
            "sync_conf": f"{BACKEND} LSE-C x offset weight (sigma={OFFSET_SIGMA_FRAMES:g} frames)" if self.sync_expert
            else "n/a (no sync expert)",
            "sync_conf_at_zero": f"{BACKEND} conf@0 (median - d(0))" if self.sync_expert else "n/a (no sync expert)",
            "sync_lse_c": f"{BACKEND} LSE-C" if self.sync_expert else "n/a (no sync expert)",
            "sync_lse_d": f"{BACKEND} LSE-D (1-cos)" if self.sync_expert else "n/a (no sync expert)",
            "syncnet_lse_c": "syncnet-python SyncNet (user weights)" if self.syncnet_weights else "n/a (no SyncNet weights)",
            "face_sim": identity.backend_name(self.identity_backend, self.arcface_onnx),
            "qalign": quality.BACKENDS["qalign"] if self.qalign_weights else "n/a (no Q-Align weights)",
            "mouth_sharpness": "Laplacian var, dlib-68 mouth crop",
            "teeth_visibility": "HSV in inner-lip polygon, dlib-68",
            "lip_audio_corr": "dlib-68 mouth opening vs audio RMS",
            "head_motion_energy": "dlib-68 nose track",
            "motion_style_sim": "dlib-68 motion statistics ratio",
            "motion_stream_style_sim": "MediaPipe face mesh motion stream (models/motion.py style stats)",
            "drift_id_sim_min": identity.backend_name(self.identity_backend, self.arcface_onnx),
            "drift_delta_e_max": "CIEDE2000 of mean face Lab",
            "face_found": "MediaPipe BlazeFace",
        }
        b.update({k: v for k, v in quality.BACKENDS.items() if k != "qalign"})
        return b


def _load_reference(path: Path) -> tuple[np.ndarray, float]:
    if path.suffix.lower() in IMAGE_EXT:
        img = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if img is None:
            raise InputError(path, "not a readable image")
        return np.ascontiguousarray(img[None, ..., ::-1]), float(WORKING_FPS)
    v = normalize_video(path)
    return v.frames, v.fps


class Scorer:
    """Holds the loaded models and a per-reference cache, so a benchmark scores many clips cheaply."""

    def __init__(self, settings: EvalSettings):
        self.s = settings
        self._ref: dict[str, dict] = {}
        self.generated_centroids: dict[str, np.ndarray] = {}  # for similarity to the other references
        self.expert = None
        if settings.sync_expert:
            from ..models.sync_expert import load_sync_expert

            self.expert = load_sync_expert(settings.sync_expert)
        self.syncnet = None
        if settings.syncnet_weights:
            from .syncnet_backend import load_syncnet

            self.syncnet = load_syncnet(settings.syncnet_weights)

    def reference(self, path: Path) -> dict:
        key = str(path)
        if key not in self._ref:
            frames, fps = _load_reference(path)
            track = track_face(frames)
            emb = identity.embed_clip(frames, track, self.s.identity_frames, self.s.identity_backend, self.s.arcface_onnx)
            stats = motion_stats(track_landmarks(frames, track), fps) if len(frames) >= 8 else None
            mesh = mesh_style(frames, fps) if len(frames) >= 8 else None
            self._ref[key] = {"emb": emb, "motion": stats, "mesh": mesh, "face_found": track.found}
        return self._ref[key]

    def score(self, gen_path: Path, ref_path: Path) -> dict:
        s = self.s
        v = normalize_video(gen_path, need_audio=True)
        if len(v.audio) == 0:
            raise InputError(gen_path, "audio stream is empty")
        frames = v.frames
        track = track_face(frames)
        row: dict = {"n_frames": len(frames), "duration": v.duration, "face_found": float(track.found),
                     "face_detected_frac": track.detected_frac}
        if self.expert is not None:
            from ..models.sync_expert import prepare
            from .sync_expert import sync_scores

            sc = sync_scores(self.expert, prepare(frames, v.audio, v.sample_rate, track.boxes, v.fps), s.max_offset_frames)
            row.update(sync_conf=sc["conf_offset_weighted"], sync_conf_at_zero=sc["conf_at_zero"], sync_lse_c=sc["lse_c"],
                       sync_lse_d=sc["lse_d"], sync_offset=sc["offset"], sync_abs_offset=abs(sc["offset"]))
        if self.syncnet is not None:
            from .syncnet_backend import syncnet_scores

            sn = syncnet_scores(self.syncnet, frames, v.audio, v.sample_rate, track.boxes)
            row.update(syncnet_lse_c=sn["lse_c"], syncnet_lse_d=sn["lse_d"], syncnet_offset=sn["offset"])
        ref = self.reference(ref_path)
        emb = identity.embed_clip(frames, track, s.identity_frames, s.identity_backend, s.arcface_onnx)
        row.update(identity.identity_similarity(emb, ref["emb"]))
        self.generated_centroids[str(gen_path)] = identity.centroid(emb)
        row.update(quality.clip_quality(frames, s.quality_frames, qalign_weights=s.qalign_weights))
        lms = track_landmarks(frames, track)
        row.update(mouth_metrics(frames, v.audio, v.sample_rate, lms, v.fps))
        ms = motion_stats(lms, v.fps)
        row["head_motion_energy"] = ms["energy"]
        row["motion_style_sim"] = style_similarity(ms, ref["motion"]) if ref["motion"] else float("nan")
        row["motion_stream_style_sim"] = mesh_style_similarity(mesh_style(frames, v.fps), ref["mesh"])
        d = drift_metrics(frames, track, v.fps, s.chunk_seconds, backend=s.identity_backend, model_path=s.arcface_onnx)
        row.update({k: d[k] for k in ("chunks", "drift_id_sim_min", "drift_delta_e_max", "drift_id_sim_per_min",
                                      "drift_delta_e_per_min")})
        return row


def pair_files(generated: Path, reference: Path) -> list[tuple[str, Path, Path | None]]:
    """(name, generated clip, reference or None) for every generated video, sorted by name."""
    if not generated.is_dir():
        raise InputError(generated, "generated folder not found")
    if not reference.exists():
        raise InputError(reference, "reference folder not found")
    gens = sorted(p for p in generated.iterdir() if p.suffix.lower() in VIDEO_EXT)
    if not gens:
        raise InputError(generated, "no video files (.mp4) in the generated folder")
    refs = [reference] if reference.is_file() else sorted(p for p in reference.iterdir() if p.suffix.lower() in VIDEO_EXT + IMAGE_EXT)
    by_stem = {p.stem: p for p in refs}
    single = refs[0] if len(refs) == 1 else None
    return [(g.stem, g, by_stem.get(g.stem, single)) for g in gens]


def aggregate(rows: list[dict]) -> dict:
    ok = [r for r in rows if not r.get("error")]
    out: dict = {"n_clips": len(rows), "n_scored": len(ok), "n_failed": len(rows) - len(ok)}
    keys = sorted({k for r in ok for k, v in r.items() if isinstance(v, (int, float)) and not isinstance(v, bool)})
    for k in keys:
        vals = [float(r[k]) for r in ok if isinstance(r.get(k), (int, float)) and math.isfinite(float(r[k]))]
        if vals:
            out[k] = float(np.mean(vals))
            out[f"{k}_std"] = float(np.std(vals))
    return out


def _identity_key(path: str) -> str:
    """Benchmark references are named <identity>_<case>.mp4; any other name is its own identity."""
    stem = Path(path).stem
    return stem.split("_")[0] if "_" in stem else stem


def add_other_identity_similarity(rows: list[dict], scorer: Scorer) -> None:
    """`face_sim_other`: mean face similarity of a generated clip to the references of the OTHER identities in the
    same run — the floor that `face_sim` (to its own reference) must clear for identity to count as kept."""
    refs = {r["reference"] for r in rows if r.get("reference") and r["reference"] in scorer._ref}
    for row in rows:
        gen = scorer.generated_centroids.get(row.get("generated", ""))
        if gen is None or row.get("error"):
            continue
        own = _identity_key(row["reference"])
        others = [identity.centroid(scorer._ref[r]["emb"]) for r in refs if _identity_key(r) != own]
        if others:
            sims = [float(gen @ o) for o in others]
            row["face_sim_other"] = float(np.mean(sims))
            row["face_sim_margin"] = row["face_sim"] - row["face_sim_other"]


def evaluate_dirs(generated: Path, reference: Path, settings: EvalSettings, progress: bool = True,
                  scorer: Scorer | None = None) -> dict:
    """The metrics document: settings, backend per metric, per-clip rows and the aggregate."""
    from tqdm.auto import tqdm

    pairs = pair_files(Path(generated), Path(reference))
    scorer = scorer or Scorer(settings)
    rows = []
    for name, g, r in tqdm(pairs, desc=f"eval {Path(generated).name}", disable=not progress):
        row = {"clip": name, "generated": str(g), "reference": str(r) if r else ""}
        try:
            if r is None:
                raise InputError(g, "no reference with the same name")
            row.update(scorer.score(g, r))
        except (AvatarVError, ValueError, FileNotFoundError) as e:
            row["error"] = str(e).splitlines()[0][:300]
        rows.append(row)
    add_other_identity_similarity(rows, scorer)
    return {"version": 1, "generated_dir": str(generated), "reference_dir": str(reference),
            "settings": dataclasses.asdict(settings), "backends": settings.backends(),
            "aggregate": aggregate(rows), "clips": rows}


def write_json(doc: dict, path: Path) -> Path:
    from ..media import atomic_path

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        Path(tmp).write_text(json.dumps(doc, indent=1, default=float))
    return path
