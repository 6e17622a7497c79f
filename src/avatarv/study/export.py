"""Deterministic study bundle from the corpus (and generated videos when they exist) for DVC stage 12_study_export.

Bundle layout (OUT is the study's media root):
    OUT/manifest.csv   the cases (the format `study create` reads; see manifest.py)
    OUT/media.csv      every video: file, sha256, bytes, source (one file may serve several cases and roles)
    OUT/media/<sha256[:16]>.mp4   content-named copies, so neither names nor paths reveal real vs generated
    OUT/bundle.json    mode, systems, counts, seed
Same inputs + seed → byte-identical bundle (sorted rows, no timestamps), so DVC sees no change on a rerun.

Generated videos: pass {system name: DIR} where DIR/<clip_id>.mp4 is the system's rendition of corpus clip
<clip_id> (same audio, reference from another scene). A video that is not in the corpus's working format (25 fps
H.264, 16 kHz mono AAC, upright) is brought to it by the media normaliser (media/normalize.py) before it enters the
bundle, so neither frame rate nor sound format tells generated from real; one that cannot be read is left out, a
row of OUT/rejected.csv (file, system, reason). Until any exist ("standin" mode), another clean corpus clip
of the same identity — preferably from a different scene — stands in for the generated one, so the app, the
export and the analysis are exercised end to end; such bundles say mode "standin" and must not be reported as a
result about a generator.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from itertools import combinations
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from ..batch import reason_of
from ..config import Config
from ..errors import AvatarVError, InputError
from ..media import atomic_path, normalize_video, probe, write_video
from ..media.normalize import WORKING_FPS, WORKING_SAMPLE_RATE
from .manifest import REAL

STANDIN_SYSTEMS = ("standin_a", "standin_b")


def _clean_clips(corpus_dir: Path) -> pd.DataFrame:
    path = corpus_dir / "manifest.parquet"
    if not path.exists():
        raise InputError(path, "corpus manifest not found (run `avatarv synth` / stage 00_corpus first)")
    names = set(pq.read_schema(path).names)  # read only the needed columns, not the per-frame ground truth
    missing = {"clip_id", "path", "identity"} - names
    if missing:
        raise InputError(path, f"missing column(s) {', '.join(sorted(missing))}")
    df = pd.read_parquet(path, columns=[c for c in ("clip_id", "path", "identity", "scene", "distractor") if c in names])
    if "distractor" in df.columns:
        df = df[df.distractor.fillna("") == ""]
    df = df[[(corpus_dir / p).is_file() for p in df.path]]
    return df.sort_values("clip_id").reset_index(drop=True)


def _standin_systems(clips: pd.DataFrame, rng: np.random.Generator) -> dict[str, dict[str, str]]:
    """For each clip, other clips of the same identity (different scene first) play the generated versions."""
    out: dict[str, dict[str, str]] = {s: {} for s in STANDIN_SYSTEMS}
    scene = clips.scene if "scene" in clips.columns else pd.Series(0, index=clips.index)
    for _, g in clips.groupby("identity", sort=True):
        if len(g) < 2:
            continue
        for i in g.index:
            others = [j for j in g.index if j != i]
            others.sort(key=lambda j: (scene[j] == scene[i], clips.clip_id[j]))
            picks = others[:2] if len(others) >= 2 else others * 2
            if rng.random() < 0.5:
                picks = picks[::-1]
            for system, j in zip(STANDIN_SYSTEMS, picks):
                out[system][clips.clip_id[i]] = clips.path[j]
    return out


def in_working_format(path: Path) -> bool:
    """True when the file can enter the bundle as it is: an upright 25 fps H.264 mp4 with 16 kHz mono AAC (what
    synth and ingest write); anything else is normalised first."""
    info = probe(path)
    return (path.suffix.lower() == ".mp4" and info.has_video and info.video_codec == "h264" and info.rotation == 0
            and info.rate == WORKING_FPS and info.has_audio and info.audio_codec == "aac"
            and info.sample_rate == WORKING_SAMPLE_RATE and info.channels == 1)


def import_generated(name: str, d: Path, staging: Path) -> tuple[dict[str, str], list[dict]]:
    """{clip_id: path usable in the bundle} of one system's videos, and the rejection rows of those it cannot use.
    Videos outside the working format are normalised into `staging`."""
    found = {p.stem: p for p in sorted(Path(d).glob("*.mp4"))}
    if not found:
        raise InputError(d, f"no <clip_id>.mp4 videos for system {name!r}")
    usable, rejected = {}, []
    for clip_id, path in found.items():
        try:
            if in_working_format(path):
                usable[clip_id] = str(path)
                continue
            v = normalize_video(path, need_audio=True, fit_audio=True)
            frames = v.frames[:, : v.frames.shape[1] // 2 * 2, : v.frames.shape[2] // 2 * 2]
            usable[clip_id] = str(write_video(staging / name / f"{clip_id}.mp4", frames, WORKING_FPS, v.audio,
                                              v.sample_rate))
        except AvatarVError as e:
            rejected.append({"file": str(path), "system": name, "reason": reason_of(path, e)})
    return usable, rejected


def plan_cases(
    real: dict[str, str], systems: dict[str, dict[str, str]], identity: dict[str, str], cfg: Config, seed: int
) -> list[dict]:
    """The cases over clip ids every system has rendered: Turing (real vs each system in turn), Likert (real and
    every system in turn), pairwise (each pair of systems; against real when only one system exists)."""
    names = sorted(systems)
    pool = sorted(set(real).intersection(*(systems[s] for s in names)))
    if not pool or not names:
        raise InputError("study export", "no clip has both a real and a generated (or stand-in) video")
    rng = np.random.default_rng(seed)

    def clips(n: int) -> list[str]:
        order = []
        while len(order) < n:
            order += [pool[i] for i in rng.permutation(len(pool))]
        return order[:n]

    pairs = list(combinations(names, 2)) or [(names[0], REAL)]
    video = lambda system, clip: real[clip] if system == REAL else systems[system][clip]
    cases = []
    for i, clip in enumerate(clips(cfg.study.turing_cases)):
        s = names[i % len(names)]
        cases.append({"case_id": f"turing_{i:03d}", "kind": "turing", "video_a": real[clip], "system_a": REAL,
                      "video_b": video(s, clip), "system_b": s, "identity": identity[clip], "clip_id": clip})
    rated = [REAL, *names]
    for i, clip in enumerate(clips(cfg.study.likert_cases)):
        s = rated[i % len(rated)]
        cases.append({"case_id": f"likert_{i:03d}", "kind": "likert", "video_a": video(s, clip), "system_a": s,
                      "video_b": "", "system_b": "", "identity": identity[clip], "clip_id": clip})
    for i, clip in enumerate(clips(cfg.study.pairwise_cases)):
        a, b = pairs[i % len(pairs)]
        cases.append({"case_id": f"pairwise_{i:03d}", "kind": "pairwise", "video_a": video(a, clip), "system_a": a,
                      "video_b": video(b, clip), "system_b": b, "identity": identity[clip], "clip_id": clip})
    return cases


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def build_bundle(
    corpus_dir: str | Path, out_dir: str | Path, cfg: Config, generated: dict[str, str | Path] | None = None
) -> dict:
    """Write the study bundle into `out_dir` (replacing a previous one) and return its summary (bundle.json). With
    `generated`, the videos that could not be used are rows of `out_dir`/rejected.csv and the summary's
    `rejections`; when none could be used nothing is written."""
    corpus_dir, out_dir = Path(corpus_dir), Path(out_dir)
    clips = _clean_clips(corpus_dir)
    real = dict(zip(clips.clip_id, clips.path))
    identity = dict(zip(clips.clip_id, clips.identity))
    rng = np.random.default_rng(cfg.seed)
    rejected: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="avatarv-study-import-") as staging:
        if generated:
            mode = "generated"
            systems = {}
            for name, d in sorted(generated.items()):
                if name == REAL or name in STANDIN_SYSTEMS:
                    raise InputError(d, f"system name {name!r} is reserved")
                systems[name], bad = import_generated(name, Path(d), Path(staging))
                rejected += bad
            if not any(systems.values()):  # nothing to show: the previous bundle stays as it was
                return {"mode": mode, "cases": 0, "videos": 0, "generated_videos": 0, "rejected": len(rejected),
                        "rejections": rejected}
        else:
            mode = "standin"
            systems = _standin_systems(clips, rng)
        summary = _write_bundle(corpus_dir, out_dir, cfg, mode, real, identity, systems, rejected)
    return summary | ({"rejections": rejected} if generated else {})


def _write_bundle(corpus_dir: Path, out_dir: Path, cfg: Config, mode: str, real: dict[str, str],
                  identity: dict[str, str], systems: dict[str, dict[str, str]], rejected: list[dict]) -> dict:
    cases = plan_cases(real, systems, identity, cfg, cfg.seed + 7)

    def source(rel_or_abs: str) -> Path:
        p = Path(rel_or_abs)
        return p if p.is_absolute() else corpus_dir / p

    media_rows, renamed = {}, {}
    for c in cases:
        for key, sys_key in (("video_a", "system_a"), ("video_b", "system_b")):
            src = c[key]
            if not src:
                continue
            if src not in renamed:
                digest = _sha256(source(src))
                renamed[src] = f"media/{digest[:16]}.mp4"
                label = src if not Path(src).is_absolute() else f"{c[sys_key]}/{Path(src).name}"
                media_rows[renamed[src]] = {"file": renamed[src], "sha256": digest, "bytes": source(src).stat().st_size,
                                            "source": label}
            c[key] = renamed[src]

    if out_dir.exists():
        shutil.rmtree(out_dir)
    (out_dir / "media").mkdir(parents=True)
    for src, dst in sorted(renamed.items(), key=lambda kv: kv[1]):
        shutil.copyfile(source(src), out_dir / dst)
    cols = ["case_id", "kind", "video_a", "system_a", "video_b", "system_b", "identity", "clip_id"]
    with atomic_path(out_dir / "manifest.csv") as tmp:
        pd.DataFrame(cases, columns=cols).to_csv(tmp, index=False)
    with atomic_path(out_dir / "media.csv") as tmp:
        pd.DataFrame(sorted(media_rows.values(), key=lambda r: r["file"])).to_csv(tmp, index=False)
    if rejected:
        with atomic_path(out_dir / "rejected.csv") as tmp:
            pd.DataFrame(rejected, columns=["file", "system", "reason"]).to_csv(tmp, index=False)
    summary = {
        "mode": mode, "seed": cfg.seed, "systems": [REAL, *sorted(systems)], "cases": len(cases),
        "turing_cases": cfg.study.turing_cases, "likert_cases": cfg.study.likert_cases,
        "pairwise_cases": cfg.study.pairwise_cases, "videos": len(media_rows),
        "bytes": int(sum(r["bytes"] for r in media_rows.values())),
    }
    if mode == "generated":
        summary.update(generated_videos=sum(len(v) for v in systems.values()), rejected=len(rejected))
    with atomic_path(out_dir / "bundle.json") as tmp:
        Path(tmp).write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
    return summary
