"""Training data for the curriculum stages (seed: "How It Learns" — text-video pairs, talking clips, and
cross-scene reference→target pairs for personality SFT).

Clips come from data/corpus (manifest ground truth) filtered by data/curated (only clips the curation cascade
kept; clean clips when no curation table exists). Each clip is cut into windows of `frames` video frames, resized
to `size` px, and encoded ONCE by the trained VAE; the window cache (latents, 64-px frames, per-frame motion, log-mel,
face and mouth boxes, captions) lives under runs/cache/ keyed by the VAE weights and the corpus, so the CPU stages
train on tensors in memory. Because the VAE is causal, a window's first latent frame is the latent of its first
frame alone and its first k latent frames are the latents of its first 1+4(k-1) frames: the progressive curriculum
(images → short clips → longer clips) slices one cache instead of encoding again.

Batches are pure functions of (seed, micro-batch index, rank) — see train/loop.py for why.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from ..errors import InputError
from ..paths import RUNS

MOUTH = slice(48, 68)  # dlib 68-point mouth landmarks


# --------------------------------------------------------------------------------------------- clip table
def load_training_clips(corpus_dir: str | Path, curated_dir: str | Path | None = None) -> pd.DataFrame:
    """Manifest rows of the clips a stage may train on: kept by curation (if curated_dir has clips.parquet),
    else the clean ones (no distractor). Adds `abs_path`."""
    corpus_dir = Path(corpus_dir)
    man_path = corpus_dir / "manifest.parquet"
    if not man_path.exists():
        raise InputError(man_path, "corpus manifest not found; run `avatarv synth --out data/corpus` first")
    man = pd.read_parquet(man_path)
    clips_path = Path(curated_dir) / "clips.parquet" if curated_dir else None
    if clips_path is not None and clips_path.exists():
        kept = pd.read_parquet(clips_path)
        kept_ids = set(kept.loc[kept["kept"].astype(bool), "clip_id"])
        man = man[man["clip_id"].isin(kept_ids)]
    else:
        man = man[man["distractor"].fillna("") == ""]
    man = man.sort_values("clip_id").reset_index(drop=True)
    man["abs_path"] = [str(corpus_dir / p) for p in man["path"]]
    return man


def caption_for(row: pd.Series | dict) -> str:
    """A text prompt from the manifest metadata (stage 1's text-video pairs): who, where, how they move, what
    they say."""
    src = str(row.get("identity_source", ""))
    who = src.split(":", 1)[1].replace("_", " ") if src.startswith("photo:") else "a drawn person"
    try:
        style = json.loads(row.get("motion_style") or "{}")
    except (TypeError, ValueError):
        style = {}
    sway = "lively head motion" if float(style.get("sway_amp", 0)) > 3 else "a calm head"
    blink = "frequent blinks" if float(style.get("blink_rate", 0)) > 0.4 else "rare blinks"
    lang = row.get("language", "")
    text = str(row.get("text", ""))[:60]
    return f"{who} ({row.get('identity', '')}) in scene {row.get('scene', 0)}, speaking {lang}, {sway}, {blink}: {text}"


def _norm_boxes(boxes, w: float, h: float) -> np.ndarray:
    """Per-frame [x0,y0,x1,y1] px (empty when no face) → (T,4) in [0,1], missing frames filled by neighbours."""
    out = np.full((len(boxes), 4), np.nan, np.float32)
    for i, b in enumerate(boxes):
        if b is not None and len(b) == 4:
            out[i] = [b[0] / w, b[1] / h, b[2] / w, b[3] / h]
    if np.isnan(out).all():
        out[:] = [0.25, 0.2, 0.75, 0.85]  # a centred-face prior
    return pd.DataFrame(out).ffill().bfill().to_numpy(np.float32)


def _mouth_boxes(landmarks, w: float, h: float) -> np.ndarray:
    boxes = []
    for lm in landmarks:
        if lm is None or len(lm) < 136:
            boxes.append([])
            continue
        pts = np.asarray(lm, np.float32).reshape(68, 2)[MOUTH]
        x0, y0 = pts.min(0)
        x1, y1 = pts.max(0)
        px, py = 0.25 * (x1 - x0) + 1, 0.4 * (y1 - y0) + 1
        boxes.append([x0 - px, y0 - py, x1 + px, y1 + py])
    return _norm_boxes(boxes, w, h)


def _motion(row) -> np.ndarray:
    from ..models.motion import motion_from_manifest_row

    return np.asarray(motion_from_manifest_row(row), np.float32)


def _log_mel(audio: np.ndarray, sr: int) -> np.ndarray:
    from ..models.audio_features import log_mel

    return np.asarray(log_mel(audio, sr), np.float32)


# --------------------------------------------------------------------------------------------- window cache
@dataclass
class WindowSet:
    """Every training window of a set of clips, as tensors (row i of each tensor = window i)."""

    latents: torch.Tensor  # (N, C, T', h, w) scaled VAE latents
    frames: torch.Tensor  # (N, T, S, S, 3) uint8 RGB at `size`
    motion: torch.Tensor  # (N, T, 16) per video frame (models/motion.py)
    mel: torch.Tensor  # (N, 80, 4T) log-mel, 4 mel frames per video frame
    face_box: torch.Tensor  # (N, T, 4) normalised [x0,y0,x1,y1]
    mouth_box: torch.Tensor  # (N, T, 4)
    identity: torch.Tensor  # (N,) int index into `identities`
    meta: pd.DataFrame  # clip_id, identity, scene, split, caption, start (one row per window)
    identities: list[str]
    image_latents: dict[int, torch.Tensor] = field(default_factory=dict)  # size → (N, C, 1, h', w') first frames
    # (N, T, 4) the eval face tracker's boxes of `frames` (objectives.SyncLoss), precomputed for machines without
    # MediaPipe (benchmarks/device_sft.py); None: SyncLoss tracks each batch's frames itself
    tracked_box: torch.Tensor | None = None

    def __len__(self) -> int:
        return len(self.meta)

    @cached_property
    def clip_start(self) -> np.ndarray:
        """(N,) row of each window's clip's earliest window: its first frame is the clip's start frame, the frame
        condition of every window of the clip (as inference conditions every chunk on the video's start frame)."""
        return self.meta.reset_index(drop=True).groupby("clip_id")["start"].transform("idxmin").to_numpy()

    @cached_property
    def clip_windows(self) -> dict[str, np.ndarray]:
        """clip_id → its window rows in time order (windows tile the clip back to back: start = k·window length)."""
        m = self.meta.reset_index(drop=True)
        return {c: g.sort_values("start").index.to_numpy(copy=True) for c, g in m.groupby("clip_id")}

    def clip_motion(self, rows, n_frames: int) -> torch.Tensor:
        """(B, n, 16) video-rate motion of each row's whole clip (its windows concatenated in time order), the first
        n = min(n_frames, shortest clip) frames: the reference's motion history (models/dit.py motion context)."""
        clips = [self.meta.at[int(r), "clip_id"] for r in np.asarray(rows).reshape(-1)]
        seqs = [self.motion[torch.as_tensor(self.clip_windows[c])].flatten(0, 1) for c in clips]
        n = min([n_frames] + [len(q) for q in seqs])
        return torch.stack([q[:n] for q in seqs])

    def indices(self, split: str | None = None) -> np.ndarray:
        m = self.meta if split is None else self.meta[self.meta["split"] == split]
        return m.index.to_numpy()

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        torch.save({**{k: getattr(self, k) for k in ("latents", "frames", "motion", "mel", "face_box", "mouth_box",
                                                     "identity", "identities", "image_latents")},
                    "meta": self.meta.to_dict("list")}, tmp)
        tmp.replace(path)

    @classmethod
    def load(cls, path: Path) -> WindowSet:
        d = torch.load(path, weights_only=False)
        d["meta"] = pd.DataFrame(d["meta"])
        return cls(**d)


def _resize(frames: np.ndarray, size: int) -> np.ndarray:
    import cv2

    if frames.shape[1] == size and frames.shape[2] == size:
        return frames
    return np.stack([cv2.resize(f, (size, size), interpolation=cv2.INTER_AREA) for f in frames])


def _fingerprint(vae, clips: pd.DataFrame, size: int, frames: int, stride: int, image_sizes) -> str:
    h = hashlib.sha1()
    h.update(json.dumps(dict(vae.config), sort_keys=True, default=str).encode())
    for p in list(vae.parameters())[:4] + list(vae.parameters())[-2:]:
        h.update(p.detach().cpu().float().numpy().tobytes()[:4096])
    h.update(("|".join(clips["clip_id"]) + f"{size},{frames},{stride},{list(image_sizes)}").encode())
    for col in ("n_frames", "identity", "split"):
        h.update(str(clips[col].tolist()).encode())
    return h.hexdigest()[:16]


def iter_windows(clips: pd.DataFrame, *, size: int, frames: int, stride: int, progress: bool = False):
    """Each window of each clip in order: {frames (T,S,S,3) uint8, motion, mel, face_box, mouth_box, meta}. A clip
    that fails to decode is skipped (printed), not fatal for the stage."""
    from ..media import normalize_video

    it = clips.itertuples(index=False)
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(list(it), desc=f"windows {size}px×{frames}", leave=False)
    for r in it:
        row = r._asdict()
        try:
            v = normalize_video(row["abs_path"], need_audio=True)  # any clip rate → the working rate
        except Exception as e:  # noqa: BLE001 - a clip that fails to decode is skipped, not fatal for the stage
            print(f"datasets: skipping {row['abs_path']}: {e}")
            continue
        n = min(len(v.frames), int(row.get("n_frames") or len(v.frames)))
        small = _resize(v.frames[:n], size)
        motion = _motion(row)[:n]
        mel = _log_mel(v.audio, v.sample_rate)
        h0, w0 = v.frames.shape[1:3]
        fb = _norm_boxes(list(row["face_box"])[:n], w0, h0)
        mb = _mouth_boxes(list(row["landmarks"])[:n], w0, h0)
        cap = caption_for(row)
        for s in range(0, n - frames + 1, stride):
            m = mel[:, 4 * s : 4 * (s + frames)]
            if m.shape[1] < 4 * frames:
                m = np.pad(m, ((0, 0), (0, 4 * frames - m.shape[1])), mode="edge")
            mo = motion[s : s + frames]
            if len(mo) < frames:
                mo = np.pad(mo, ((0, frames - len(mo)), (0, 0)), mode="edge")
            yield {"frames": small[s : s + frames], "motion": mo, "mel": m, "face_box": fb[s : s + frames],
                   "mouth_box": mb[s : s + frames],
                   "meta": {"clip_id": row["clip_id"], "identity": row["identity"], "scene": int(row["scene"]),
                            "split": row["split"], "caption": cap, "start": s}}


@torch.no_grad()
def encode_windows(vae, frames_u8: torch.Tensor, image_sizes=()) -> tuple[torch.Tensor, dict[int, torch.Tensor]]:
    """(B, T, S, S, 3) uint8 → scaled latents (B, C, T', h, w) and {size: first-frame latents at size} on the CPU."""
    device = next(vae.parameters()).device
    x = frames_u8.to(device).permute(0, 4, 1, 2, 3).float() / 127.5 - 1.0
    img = {}
    for s in image_sizes:
        first = torch.nn.functional.interpolate(x[:, :, 0], size=(s, s), mode="area")
        img[s] = vae.encode(first[:, :, None]).float().cpu()
    return vae.encode(x).float().cpu(), img


@torch.no_grad()
def build_windows(
    clips: pd.DataFrame,
    vae,
    *,
    size: int = 64,
    frames: int = 9,
    stride: int | None = None,
    image_sizes: tuple[int, ...] = (),
    cache_dir: str | Path | None = RUNS / "cache",
    batch: int = 16,
    progress: bool = True,
) -> WindowSet:
    """Cut `clips` into windows of `frames` frames (every `stride`, default `frames`), encode them with `vae`
    (posterior mean: deterministic), and cache the result; a second call with the same inputs loads the cache."""
    stride = stride or frames
    cache = None
    if cache_dir is not None:
        cache = Path(cache_dir) / f"windows_s{size}_f{frames}_{_fingerprint(vae, clips, size, frames, stride, image_sizes)}.pt"
        if cache.exists():
            return WindowSet.load(cache)
    vids, motions, mels, faces, mouths, rows = [], [], [], [], [], []
    identities = sorted(clips["identity"].unique())
    for w in iter_windows(clips, size=size, frames=frames, stride=stride, progress=progress):
        vids.append(w["frames"])
        motions.append(w["motion"])
        mels.append(w["mel"])
        faces.append(w["face_box"])
        mouths.append(w["mouth_box"])
        rows.append(w["meta"])
    if not rows:
        raise InputError(Path(str(clips["abs_path"].iloc[0]) if len(clips) else "."), f"no clip has {frames} frames")
    frames_u8 = torch.from_numpy(np.stack(vids))
    lat, img = [], {s: [] for s in image_sizes}
    for i in range(0, len(frames_u8), batch):
        la, im = encode_windows(vae, frames_u8[i : i + batch], image_sizes)
        lat.append(la)
        for s in image_sizes:
            img[s].append(im[s])
    ws = WindowSet(
        latents=torch.cat(lat), frames=frames_u8, motion=torch.from_numpy(np.stack(motions)),
        mel=torch.from_numpy(np.stack(mels)), face_box=torch.from_numpy(np.stack(faces)),
        mouth_box=torch.from_numpy(np.stack(mouths)),
        identity=torch.tensor([identities.index(r["identity"]) for r in rows]), meta=pd.DataFrame(rows),
        identities=identities, image_latents={s: torch.cat(v) for s, v in img.items()},
    )
    if cache is not None:
        ws.save(cache)
    return ws


def load_pairs(curated_dir: str | Path | None, ws: WindowSet) -> pd.DataFrame:
    """Cross-scene (ref_clip_id, target_clip_id) pairs whose clips both have windows: pairs.parquet from curation,
    else every same-identity pair of clips from different scenes (ground-truth identities)."""
    have = set(ws.meta["clip_id"])
    path = Path(curated_dir) / "pairs.parquet" if curated_dir else None
    if path is not None and path.exists():
        p = pd.read_parquet(path)[["ref_clip_id", "target_clip_id"]]
    else:
        clips = ws.meta.drop_duplicates("clip_id")[["clip_id", "identity", "scene"]]
        m = clips.merge(clips, on="identity", suffixes=("_ref", "_tgt"))
        m = m[m["scene_ref"] != m["scene_tgt"]]
        p = pd.DataFrame({"ref_clip_id": m["clip_id_ref"], "target_clip_id": m["clip_id_tgt"]})
    p = p[p["ref_clip_id"].isin(have) & p["target_clip_id"].isin(have)]
    return p.sort_values(["target_clip_id", "ref_clip_id"]).reset_index(drop=True)


# --------------------------------------------------------------------------------------------- batch sources
def _epoch_slice(n: int, batch_size: int, index: int, seed: int) -> np.ndarray:
    """Positions of micro-batch `index` in a fresh seeded permutation of range(n) per epoch (last partial
    batch dropped, so every batch has the same size)."""
    per_epoch = max(1, n // batch_size)
    epoch, pos = divmod(index, per_epoch)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 7919 + epoch)).numpy()
    if n < batch_size:  # fewer samples than a batch: repeat the permutation
        perm = np.resize(perm, batch_size)
    return perm[pos * batch_size : (pos + 1) * batch_size]


def _shard(x: np.ndarray, rank: int, world: int) -> np.ndarray:
    return x[rank::world]


class WindowBatches:
    """Micro-batches of windows (T2V / A2V): latents cut to `latent_frames`, plus the conditioning they need."""

    def __init__(self, ws: WindowSet, indices, batch_size: int, *, seed: int, latent_frames: int | None = None,
                 image_size: int | None = None, td: int = 4):
        self.ws, self.idx, self.bs, self.seed = ws, np.asarray(indices), batch_size, seed
        self.latent_frames, self.image_size, self.td = latent_frames, image_size, td

    def __len__(self) -> int:
        return len(self.idx)

    def batch(self, index: int, rank: int, world: int) -> dict[str, Any]:
        sel = self.idx[_shard(_epoch_slice(len(self.idx), self.bs, index, self.seed), rank, world)]
        return window_batch(self.ws, sel, latent_frames=self.latent_frames, image_size=self.image_size, td=self.td)


def window_batch(ws: WindowSet, sel, *, latent_frames: int | None = None, image_size: int | None = None,
                 td: int = 4) -> dict[str, Any]:
    sel = torch.as_tensor(np.array(sel), dtype=torch.long)
    if image_size is not None and image_size in ws.image_latents:
        lat, tl = ws.image_latents[image_size][sel], 1
    else:
        tl = latent_frames or ws.latents.shape[2]
        lat = ws.latents[sel][:, :, :tl]
    tv = 1 + td * (tl - 1)
    return {
        "latents": lat,
        "motion": ws.motion[sel][:, :tv],
        "mel": ws.mel[sel][:, :, : 4 * tv],
        "face_box": ws.face_box[sel][:, :tv],
        "mouth_box": ws.mouth_box[sel][:, :tv],
        "identity": ws.identity[sel],
        "frames": ws.frames[sel][:, :tv],
        "captions": [ws.meta.at[int(i), "caption"] for i in sel],
        "window": sel,
        "start_latent": ws.latents[torch.as_tensor(ws.clip_start[sel.numpy()])][:, :, 0],  # (B, C, h, w)
        "start_motion": ws.motion[torch.as_tensor(ws.clip_start[sel.numpy()])][:, 0],  # (B, 16) at that frame
        **({} if ws.tracked_box is None else {"tracked_box": ws.tracked_box[sel][:, :tv]}),
    }


class PairBatches:
    """Micro-batches of (reference window from one scene, target window from another scene of the same person)."""

    def __init__(self, ws: WindowSet, pairs: pd.DataFrame, batch_size: int, *, seed: int, splits=("train",),
                 td: int = 4, context_frames: int = 0):
        by_clip = ws.meta.groupby("clip_id").groups
        split_of = dict(zip(ws.meta["clip_id"], ws.meta["split"]))
        items = []
        for ref, tgt in pairs[["ref_clip_id", "target_clip_id"]].itertuples(index=False):
            if split_of.get(tgt) not in splits:
                continue
            refs = sorted(by_clip[ref])
            for j, t in enumerate(sorted(by_clip[tgt])):
                items.append((refs[j % len(refs)], t))
        if not items:
            raise InputError(Path("pairs.parquet"), f"no cross-scene pair in splits {splits}")
        self.items = np.asarray(items)
        self.ws, self.bs, self.seed, self.td, self.context_frames = ws, batch_size, seed, td, context_frames

    def __len__(self) -> int:
        return len(self.items)

    def batch(self, index: int, rank: int, world: int) -> dict[str, Any]:
        sel = self.items[_shard(_epoch_slice(len(self.items), self.bs, index, self.seed), rank, world)]
        return pair_batch(self.ws, sel[:, 0], sel[:, 1], td=self.td, context_frames=self.context_frames)


def pair_batch(ws: WindowSet, ref_idx, tgt_idx, *, td: int = 4, context_frames: int = 0) -> dict[str, Any]:
    """Target windows + their cross-scene reference windows; `context_frames` > 0 adds the reference clip's motion
    history ("ref_motion_context", video rate, never the target clip's)."""
    out = window_batch(ws, tgt_idx, td=td)
    r = torch.as_tensor(np.array(ref_idx), dtype=torch.long)
    out.update({"ref_latents": ws.latents[r], "ref_motion": ws.motion[r], "ref_frames": ws.frames[r],
                "ref_face_box": ws.face_box[r], "ref_window": r})
    if context_frames > 0:
        out["ref_motion_context"] = ws.clip_motion(r, context_frames)
    return out
