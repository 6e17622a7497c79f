"""In-repo audio-visual sync expert: a SyncNet-style two-tower contrastive model trained on the corpus.

The seed scores lip sync with "SyncNet confidence" (8.97 for Avatar V). SyncNet's weights cannot be fetched
here, so this module trains the same kind of judge from scratch (Chung & Zisserman 2016/2017): a visual tower
over 5 consecutive lower-face crops and an audio tower over the matching 0.2 s of log-mel (models/audio_features,
4 mel frames per video frame) map both into one embedding space; training is a multi-way match — the true
alignment must be more similar than the same clip's audio shifted by ±1..K frames and than other clips' audio.

Scoring (SyncNet's LSE protocol, our distance = 1 - cosine): for each offset k in [-K, K] average the distance
between every video window t and the audio window t+k; offset = argmin_k (k > 0: the audio lags the video),
LSE-D = that minimum, LSE-C = median_k - min_k. LSE-C alone finds a shift and forgives it, so the delivered sync
is scored by confidences that also look at where the peak is:

- `conf_offset_weighted` (the leaderboard's "sync conf"): LSE-C x exp(-offset^2 / 2 sigma^2), sigma =
  `OFFSET_SIGMA_FRAMES` = 3 frames (120 ms at 25 fps; audio-video offsets of ~45-125 ms become detectable and
  ~90-185 ms unacceptable, ITU-R BT.1359). A clean peak at offset 0 keeps its full LSE-C; the same peak found s
  frames away counts less the larger |s|, so the score falls at every shift instead of dropping to chance level.
- `conf_kernel_sum`: the sigma-weighted mean of the per-offset margin median - d(k) around k = 0 (a smooth
  variant; reported by the validation next to the others, not ranked on).
- `conf_at_zero` = median - d(0): the raw single-offset margin. It falls strictly only until the audio has moved
  about one 5-frame window (|shift| <= 2), then wanders at chance level, so it is reported but not ranked on.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config
from torch import nn

from ..media import resample
from ..models.audio_features import log_mel
from .face_track import mouth_crops, track_face

WINDOW = 5  # video frames per sample (0.2 s at 25 fps), as in SyncNet
MELS_PER_FRAME = 4  # 100 mel frames/s over 25 fps
CROP = (48, 32)  # mouth crop (w, h)
SAMPLE_RATE = 16000
BACKEND = "avatarv-sync-expert"
OFFSET_SIGMA_FRAMES = 3.0  # tolerance of the delivered-sync confidence to a found offset (frames), see module doc


@dataclass
class SyncInputs:
    """Per-clip, normalised model inputs: crops (T, h, w) and mel (80, 4T) aligned frame by frame."""

    crops: np.ndarray
    mel: np.ndarray

    @property
    def n_frames(self) -> int:
        return min(len(self.crops), self.mel.shape[1] // MELS_PER_FRAME)


def prepare(frames: np.ndarray, audio: np.ndarray, sample_rate: int, boxes: np.ndarray | None = None,
            fps: float = 25.0) -> SyncInputs:
    """Mouth crops + log-mel of one clip, each normalised per clip (removes identity/loudness, keeps motion)."""
    if abs(fps - 25.0) > 0.5:
        raise ValueError(f"sync expert expects 25 fps video, got {fps:.2f}")
    if boxes is None:
        boxes = track_face(frames).boxes
    crops = mouth_crops(frames, boxes, CROP)
    crops = (crops - crops.mean(0, keepdims=True)) / (crops.std() + 1e-3)
    if sample_rate != SAMPLE_RATE:
        audio = resample(audio, sample_rate, SAMPLE_RATE)
    mel = log_mel(np.asarray(audio, np.float32), SAMPLE_RATE)
    mel = (mel - mel.mean(1, keepdims=True)) / (mel.std() + 1e-3)
    return SyncInputs(crops.astype(np.float32), mel.astype(np.float32))


def _block(cin: int, cout: int, pool, stride=1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride=stride, padding=1), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
                         nn.MaxPool2d(pool))


class SyncExpert(ModelMixin, ConfigMixin):
    """Two towers into one `embed_dim` unit sphere.

    Visual: 5 stacked grey lower-face crops (B, 5, h, w) → one embedding (early temporal fusion, as SyncNet).
    Audio: fully convolutional along time — log-mel (B, 1, 80, L) → one feature per video frame (4 mel frames)
    → a width-5 temporal conv → one embedding per 5-frame window start, so a clip's every offset costs one pass.
    Small on purpose (~0.4 M parameters): it trains in a minute or two on 2 CPU cores inside stage 10_eval.
    """

    @register_to_config
    def __init__(self, window: int = WINDOW, crop_h: int = CROP[1], crop_w: int = CROP[0], n_mels: int = 80,
                 channels: int = 16, embed_dim: int = 128, temperature: float = 0.07):
        super().__init__()
        c = channels
        self.visual = nn.Sequential(_block(window, c, 2), _block(c, 2 * c, 2), _block(2 * c, 4 * c, 2), nn.Flatten(),
                                    nn.Linear(4 * c * (crop_h // 8) * (crop_w // 8), embed_dim))
        # mel axis /16 (stride 2 then three pools), time axis /4 = one column per video frame
        self.audio = nn.Sequential(_block(1, c, 2, stride=(2, 1)), _block(c, 2 * c, 2), _block(2 * c, 4 * c, (2, 1)))
        self.audio_head = nn.Conv1d(4 * c * (n_mels // 16), embed_dim, kernel_size=window)

    def embed_visual(self, x: torch.Tensor) -> torch.Tensor:
        """(B, window, h, w) → (B, D) unit vectors."""
        return F.normalize(self.visual(x), dim=-1)

    def embed_audio(self, mel: torch.Tensor) -> torch.Tensor:
        """(B, 1, 80, 4n) → (B, n - window + 1, D): the embedding of every window start."""
        f = self.audio(mel)
        f = f.flatten(1, 2)  # (B, C*mel', n)
        return F.normalize(self.audio_head(f).transpose(1, 2), dim=-1)


def _visual_windows(inp: SyncInputs, starts: np.ndarray) -> torch.Tensor:
    idx = starts[:, None] + np.arange(WINDOW)[None]
    return torch.from_numpy(inp.crops[idx])


def _mel_segment(inp: SyncInputs, first: int, n: int) -> torch.Tensor:
    """Mel of video frames [first, first + n) as (1, 1, 80, 4n)."""
    return torch.from_numpy(inp.mel[:, MELS_PER_FRAME * first : MELS_PER_FRAME * (first + n)])[None, None]


MARGIN = 2  # extra video frames of audio context either side, so training windows see no conv padding


def train_sync_expert(clips: list[SyncInputs], steps: int = 300, batch_size: int = 32, max_shift: int = 6,
                      lr: float = 2e-3, seed: int = 0, progress: bool = True) -> tuple[SyncExpert, list[float]]:
    """Multi-way matching: for each sampled video window the aligned audio window must beat the same clip's
    audio at offsets ±1..max_shift and the other batch clips' aligned audio (cross-entropy over cosines/τ)."""
    need = WINDOW + 2 * (max_shift + MARGIN) + 1
    clips = [c for c in clips if c.n_frames >= need]
    if not clips:
        raise ValueError(f"train_sync_expert: no clip has {need}+ frames")
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = SyncExpert()
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.1)
    n_shift = 2 * max_shift + 1
    seg = n_shift + WINDOW - 1 + 2 * MARGIN  # video frames of audio per sample
    tau = model.config.temperature
    history = []
    from tqdm.auto import tqdm

    model.train()
    for _ in tqdm(range(steps), desc="sync expert", disable=not progress, mininterval=5):
        ci = rng.integers(len(clips), size=batch_size)
        vis, aud = [], []
        for c in ci:
            clip = clips[c]
            t = int(rng.integers(max_shift + MARGIN, clip.n_frames - WINDOW - max_shift - MARGIN + 1))
            v = _visual_windows(clip, np.array([t]))
            if rng.random() < 0.5:  # mirror: mouths are left-right symmetric, doubles the visual data
                v = v.flip(-1)
            vis.append(v)
            aud.append(_mel_segment(clip, t - max_shift - MARGIN, seg))
        v = model.embed_visual(torch.cat(vis) + 0.05 * torch.randn(batch_size, WINDOW, CROP[1], CROP[0]))
        a = model.embed_audio(torch.cat(aud))[:, MARGIN : MARGIN + n_shift]  # (B, n_shift, D)
        own = torch.einsum("bd,bkd->bk", v, a)  # same clip, every offset
        cross = v @ a[:, max_shift].T  # aligned audio of every batch clip
        same = torch.from_numpy(ci[:, None] == ci[None])
        other = cross.masked_fill(same, -1e4)
        logits = torch.cat([own, other], 1) / tau
        loss = F.cross_entropy(logits, torch.full((batch_size,), max_shift, dtype=torch.long))
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        history.append(float(loss.detach()))
    model.eval()
    return model, history


@torch.no_grad()
def offset_distances(model: SyncExpert, inp: SyncInputs, max_offset: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """(offsets, d) with d[t, j] = 1 - cos(video window t, audio window t + offsets[j])."""
    n = inp.n_frames
    max_offset = max(0, min(max_offset, (n - WINDOW - 1) // 2))
    offsets = np.arange(-max_offset, max_offset + 1)
    starts = np.arange(max_offset, n - WINDOW - max_offset + 1)
    if len(starts) == 0:
        raise ValueError(f"sync expert: clip has {n} frames, fewer than one {WINDOW}-frame window")
    model.eval()
    v = model.embed_visual(_visual_windows(inp, starts))
    a = model.embed_audio(_mel_segment(inp, 0, n))[0]  # (n - WINDOW + 1, D)
    d = np.stack([1 - (v * a[starts + k]).sum(-1).numpy() for k in offsets], 1)
    return offsets, d


def offset_weight(offsets, sigma: float = OFFSET_SIGMA_FRAMES) -> np.ndarray:
    """Gaussian tolerance exp(-k^2 / 2 sigma^2) of an alignment found k frames from zero."""
    k = np.asarray(offsets, dtype=np.float64)
    return np.exp(-0.5 * (k / sigma) ** 2)


def sync_scores(model: SyncExpert, inp: SyncInputs, max_offset: int = 8, sigma: float = OFFSET_SIGMA_FRAMES) -> dict:
    """SyncNet-protocol scores (offset in frames, > 0 = audio late; lse_d; lse_c) plus the delivered-sync
    confidences of the module doc (conf_offset_weighted, conf_kernel_sum, conf_at_zero) and the distance curve."""
    offsets, d = offset_distances(model, inp, max_offset)
    mean = d.mean(0)
    j = int(np.argmin(mean))
    med = float(np.median(mean))
    zero = int(np.where(offsets == 0)[0][0])
    lse_c = med - float(mean[j])
    w = offset_weight(offsets, sigma)
    return {
        "offset": int(offsets[j]),
        "lse_d": float(mean[j]),
        "lse_c": lse_c,
        "conf_offset_weighted": lse_c * float(w[j]),
        "conf_kernel_sum": float((w * (med - mean)).sum() / w.sum()),
        "conf_at_zero": med - float(mean[zero]),
        "dist_at_zero": float(mean[zero]),
        "sigma_frames": float(sigma),
        "curve": {int(k): float(m) for k, m in zip(offsets, mean)},
        "backend": BACKEND,
    }


def load_sync_expert(path) -> SyncExpert:
    model = SyncExpert.from_pretrained(str(path))
    model.eval()
    return model
