"""Per-person adaptation from the reference clip itself: `avatarv adapt --ref CLIP.mp4` (seed: "From just ~10
seconds of ... you"; a face far from the training data).

The generator copies a person from the reference tokens; for a face unlike any it trained on, a few minutes of
fine-tuning on the reference clip's own frames and speech teach the LoRA matrices (peft, on the DiT blocks'
attention and MLP projections; everything else frozen) what that face looks like when it talks. The clip is
carried into the face-aligned working space (faces/align.py) exactly as generation carries it, cut into windows
the way the training stages cut the corpus (data/datasets.py WindowSet), and its two halves reference each other
(first half → windows of the second, and back), so the adapter learns to copy across time, not to replay a window.

The adapter is saved in peft's own layout (adapter_config.json + adapter_model.safetensors, keys prefixed as
`PeftModel.save_pretrained` writes them) under runs/adapt/<reference hash>-<base model hash>/adapter, and a
second call with the same clip and base model returns it without training (`cached=True`). Training runs through
the shared accelerate loop, so a killed run resumes from its last checkpoint.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ..config import Config
from ..data.datasets import PairBatches, WindowSet
from ..errors import InputError
from ..faces.align import align_clip
from ..faces.crop import mouth_box
from ..faces.track import track_face
from ..paths import RUNS
from .generator import AvatarGenerator
from .loop import loss_drop, make_accelerator, train_loop
from .lora import LORA_RANK, TARGETS, add_lora
from .objectives import FlowSpec, flow_loss

ADAPTER = "adapter"
PEFT_PREFIX = "base_model.model."  # what PeftModel.save_pretrained puts before every key
MIN_SECONDS = 2.0  # two halves of at least one training window each, with room for several windows


@dataclass
class AdaptResult:
    adapter_dir: Path
    metrics: dict
    cached: bool


def file_hash(path: Path, n: int = 12) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:n]


def base_hash(checkpoint: Path) -> str:
    """The base pipeline's identity: an adapter only fits the transformer weights it was trained on."""
    files = sorted((Path(checkpoint) / "transformer").glob("*.safetensors")) or sorted((Path(checkpoint) / "transformer").glob("*.bin"))
    h = hashlib.sha256()
    for f in files:
        h.update(file_hash(f, 64).encode())
    return h.hexdigest()[:8]


def adapter_dir_for(reference: Path, checkpoint: Path, root: Path = RUNS / "adapt") -> Path:
    return root / f"{file_hash(reference)}-{base_hash(checkpoint)}" / ADAPTER


def reference_windows(pipe, frames: np.ndarray, audio: np.ndarray, sr: int, n_frames: int, *,
                      source: str = "reference") -> WindowSet:
    """The aligned reference clip as a WindowSet of two 'clips' (its halves), encoded by the pipeline's VAE."""
    from ..media import resample
    from ..models.audio_features import log_mel

    seconds = len(frames) / pipe.config.fps
    if seconds < MIN_SECONDS:
        raise InputError(source, f"reference too short to adapt on: {seconds:.1f} s (need at least {MIN_SECONDS:.0f} s)")
    size = pipe.transformer.config.sample_size
    small = np.stack([_resize(f, size) for f in frames])
    motion = pipe.motion_planner.measure(frames)
    if motion is None:
        raise InputError(source, "the reference's head motion cannot be measured (no face mesh found)")
    motion = pipe.motion_planner.calibrate(motion)
    track = track_face(frames)
    side = frames.shape[1]
    face = track.boxes / side
    mouth = np.stack([mouth_box(b) for b in track.boxes]) / side
    mel = log_mel(resample(np.asarray(audio, np.float32), sr, 16000), 16000)
    half = len(frames) // 2
    rows, vids, mots, mels, fbs, mbs = [], [], [], [], [], []
    for clip, (a, b) in (("first", (0, half)), ("second", (half, len(frames)))):
        for s in range(a, b - n_frames + 1, n_frames):
            m = mel[:, 4 * s : 4 * (s + n_frames)]
            if m.shape[1] < 4 * n_frames:
                m = np.pad(m, ((0, 0), (0, 4 * n_frames - m.shape[1])), mode="edge")
            vids.append(small[s : s + n_frames])
            mots.append(motion[s : s + n_frames])
            mels.append(m)
            fbs.append(face[s : s + n_frames])
            mbs.append(mouth[s : s + n_frames])
            rows.append({"clip_id": clip, "identity": "reference", "scene": int(clip == "second"), "split": "adapt",
                         "caption": "", "start": s - a})
    if len({r["clip_id"] for r in rows}) < 2:  # a window longer than half the clip
        raise InputError(source, f"reference too short to adapt on: {seconds:.1f} s for windows of {n_frames} frames")
    frames_u8 = torch.from_numpy(np.stack(vids))
    vae = pipe.vae
    with torch.no_grad():
        lat = torch.cat([vae.encode((frames_u8[i : i + 8].permute(0, 4, 1, 2, 3).float() / 127.5 - 1.0)
                                    .to(vae.device, vae.dtype)).float().cpu() for i in range(0, len(frames_u8), 8)])
    return WindowSet(latents=lat, frames=frames_u8, motion=torch.from_numpy(np.stack(mots)).float(),
                     mel=torch.from_numpy(np.stack(mels)).float(), face_box=torch.from_numpy(np.stack(fbs)).float(),
                     mouth_box=torch.from_numpy(np.stack(mbs)).float(), identity=torch.zeros(len(rows), dtype=torch.long),
                     meta=pd.DataFrame(rows), identities=["reference"])


def _resize(frame: np.ndarray, size: int) -> np.ndarray:
    import cv2

    if frame.shape[0] == size:
        return frame
    return cv2.resize(frame, (size, size), interpolation=cv2.INTER_AREA)


def prepare(pipe, reference: Path, n_frames: int):
    """(windows, aligned clip) of a reference video with speech: what adaptation trains on."""
    from ..inference.inputs import read_reference
    from ..media import normalize_video

    ref = read_reference(reference)
    try:
        clip = normalize_video(reference, need_audio=True)
    except Exception as e:  # noqa: BLE001 - one line naming the file, whatever the decoder said
        raise InputError(reference, f"adapt needs the reference's own speech ({type(e).__name__}: {str(e)[:80]})") from None
    aligned = align_clip(ref.frames, 2 * pipe.transformer.config.sample_size, fps=pipe.config.fps, source=str(reference))
    ws = reference_windows(pipe, aligned.frames, clip.audio, clip.sample_rate, n_frames, source=str(reference))
    return ws, aligned


def fit(cfg: Config, pipe, ws: WindowSet, run_dir: Path, *, steps: int, resume: bool = True, progress: bool = True,
        device=None):
    """Train LoRA matrices on the pipeline's transformer (in place) over the reference's windows; the shared loop's
    LoopResult (checkpoints under `run_dir`, resumable)."""
    from .stage import pick_device

    st, sft, spec = cfg.train.lora, cfg.train.sft, pipe.conditions
    td = pipe.vae.config.temporal_downsample
    flow = FlowSpec(spec, bridge_prob=sft.bridge_prob, cond_dropout=sft.cond_dropout, timestep_shift=sft.timestep_shift,
                    losses={k: v for k, v in sft.losses.items() if k in ("face", "lip", "motion", "audio_mouth")})
    pairs = pd.DataFrame({"ref_clip_id": ["first", "second"], "target_clip_id": ["second", "first"]})
    source = PairBatches(ws, pairs, st.batch_size, seed=cfg.seed + 5, splits=("adapt",), td=td,
                         context_frames=spec.motion_context_frames if spec.motion else 0)
    device = device or pick_device(cfg)
    model = add_lora(AvatarGenerator(pipe.transformer, pipe.audio_encoder).to(device))

    def loss_fn(m, batch, gen, step):
        return flow_loss(m, batch, gen, flow, td=td)

    return train_loop(model, loss_fn, source, st, run_dir, seed=cfg.seed + 5, total_steps=steps, resume=resume,
                      accelerator=make_accelerator(st.mixed_precision, str(device)), use_muon=False, use_ema=False,
                      progress=progress)


def adapt(cfg: Config, pipe, checkpoint: Path, reference: Path, *, root: Path = RUNS / "adapt", steps: int | None = None,
          resume: bool = True, progress: bool = True) -> AdaptResult:
    """Fit (or fetch from the cache) the LoRA adapter of `reference` (a video with speech) on the pipeline saved
    at `checkpoint`."""
    total = int(steps if steps is not None else cfg.train.lora.steps)
    out = adapter_dir_for(reference, checkpoint, root)
    if (out / "adapter_config.json").exists():
        meta = json.loads((out / "adapt.json").read_text())
        if meta.get("steps") == total:
            return AdaptResult(out, meta, cached=True)
    ws, aligned = prepare(pipe, reference, cfg.train.lora.frames)
    res = fit(cfg, pipe, ws, out.parent, steps=total, resume=resume, progress=progress)
    metrics = {"reference": str(reference), "steps": total, "lora_rank": LORA_RANK, "windows": len(ws),
               "reference_seconds": round(len(aligned.frames) / pipe.config.fps, 2), "checkpoint": str(checkpoint),
               "face_note": aligned.note, "resumed_from": res.resumed_from, **loss_drop(res.state.history)}
    save_adapter(res.model.transformer, out, metrics)
    return AdaptResult(out, metrics, cached=False)


def lora_config():
    from peft import LoraConfig

    return LoraConfig(r=LORA_RANK, lora_alpha=LORA_RANK, target_modules=TARGETS, lora_dropout=0.0)


def save_adapter(transformer, out: Path, metrics: dict) -> Path:
    """peft's layout, written to `<out>.partial` and renamed, so a cache hit is always a whole adapter."""
    from peft import get_peft_model_state_dict
    from safetensors.torch import save_file

    tmp = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    lora_config().save_pretrained(str(tmp))
    state = {PEFT_PREFIX + k: v.detach().cpu().contiguous() for k, v in get_peft_model_state_dict(transformer).items()}
    save_file(state, str(tmp / "adapter_model.safetensors"))
    (tmp / "adapt.json").write_text(json.dumps(metrics, indent=2))
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    return out


def load_adapter(pipe, adapter_dir: str | Path):
    """Inject the saved LoRA into the pipeline's transformer (in place) and return the pipeline."""
    from peft import LoraConfig, inject_adapter_in_model, set_peft_model_state_dict
    from safetensors.torch import load_file

    adapter_dir = Path(adapter_dir)
    weights = adapter_dir / "adapter_model.safetensors"
    if not (adapter_dir / "adapter_config.json").exists() or not weights.exists():
        raise InputError(adapter_dir, "not a peft adapter folder (adapter_config.json + adapter_model.safetensors)")
    cfg = LoraConfig.from_pretrained(str(adapter_dir))
    state = {k.removeprefix(PEFT_PREFIX): v for k, v in load_file(str(weights)).items()}
    tr = inject_adapter_in_model(cfg, pipe.transformer)  # in place: the pipeline keeps its module
    result = set_peft_model_state_dict(tr, state)
    unexpected = [k for k in getattr(result, "unexpected_keys", []) if "lora_" in k]
    if unexpected:
        raise InputError(adapter_dir, f"adapter does not fit this model ({len(unexpected)} unexpected keys, "
                                      f"e.g. {unexpected[0]})")
    tr.requires_grad_(False)
    return pipe
