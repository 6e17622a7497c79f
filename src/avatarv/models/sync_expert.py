"""Audio-visual sync expert: a SyncNet-style two-tower model that embeds lip motion and speech into one space.

The seed scores lip sync with "SyncNet confidence" (8.97 for Avatar V). SyncNet's weights cannot be fetched
here, so the project trains the same kind of judge from scratch (Chung & Zisserman 2016/2017; training in
train/sync_expert.py): a visual tower over 5 consecutive lower-face crops and an audio tower over the matching
0.2 s of log-mel (models/audio_features, 4 mel frames per video frame) map both into one embedding space.

This module holds the architecture, its input contract (`prepare`: mouth crops from the face tracker and
log-mel, each normalised per clip) and SyncNet's offset search (`offset_curve`): for each offset k in [-K, K]
the mean distance (1 - cosine) between every video window t and the audio window t+k; the best offset is the
argmin (k > 0: the audio lags the video), LSE-D is that minimum and LSE-C = median - minimum. Users: the
evaluation suite (eval/sync_expert.py adds the delivered-sync confidences), the curation cascade's sync check
and the training's lip-sync loss (train/objectives.SyncLoss).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config
from torch import nn

from ..faces import mouth_crops, track_face
from ..media import resample
from ..media.normalize import WORKING_FPS, as_rate, rate_index
from .audio_features import log_mel

WINDOW = 5  # video frames per sample (0.2 s at 25 fps), as in SyncNet
MELS_PER_FRAME = 4  # 100 mel frames/s over 25 fps
CROP = (48, 32)  # mouth crop (w, h)
SAMPLE_RATE = 16000


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
    """Mouth crops + log-mel of one clip, each normalised per clip (removes identity/loudness, keeps motion).

    The towers see `WINDOW` frames at the working rate (media.WORKING_FPS); frames at another `fps` (and their
    boxes) are first retimed to it by the media normaliser."""
    if as_rate(fps) != WORKING_FPS:
        idx = rate_index(len(frames), fps, WORKING_FPS)
        frames = frames[idx]
        boxes = None if boxes is None else np.asarray(boxes)[idx]
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


def visual_windows(inp: SyncInputs, starts: np.ndarray) -> torch.Tensor:
    """The `WINDOW`-frame crop stacks that start at video frames `starts`: (len(starts), WINDOW, h, w)."""
    idx = starts[:, None] + np.arange(WINDOW)[None]
    return torch.from_numpy(inp.crops[idx])


def mel_segment(inp: SyncInputs, first: int, n: int) -> torch.Tensor:
    """Mel of video frames [first, first + n) as (1, 1, 80, 4n)."""
    return torch.from_numpy(inp.mel[:, MELS_PER_FRAME * first : MELS_PER_FRAME * (first + n)])[None, None]


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
    v = model.embed_visual(visual_windows(inp, starts))
    a = model.embed_audio(mel_segment(inp, 0, n))[0]  # (n - WINDOW + 1, D)
    d = np.stack([1 - (v * a[starts + k]).sum(-1).numpy() for k in offsets], 1)
    return offsets, d


@dataclass(frozen=True)
class OffsetCurve:
    """SyncNet's offset search on one clip: `dist[j]` is the mean distance over video windows at `offsets[j]`."""

    offsets: np.ndarray  # (K,) int frames, -K'..K'; > 0 = the audio lags the video
    dist: np.ndarray  # (K,) mean 1 - cos

    @property
    def best(self) -> int:
        """Index of the best (lowest-distance) offset."""
        return int(np.argmin(self.dist))

    @property
    def offset(self) -> int:
        return int(self.offsets[self.best])

    @property
    def median(self) -> float:
        return float(np.median(self.dist))

    @property
    def lse_d(self) -> float:
        return float(self.dist[self.best])

    @property
    def lse_c(self) -> float:
        return self.median - self.lse_d

    def at(self, k: int) -> float:
        """Mean distance at offset k (frames)."""
        return float(self.dist[int(np.where(self.offsets == k)[0][0])])


def offset_curve(model: SyncExpert, inp: SyncInputs, max_offset: int = 8) -> OffsetCurve:
    """Mean distance at every offset in [-max_offset, max_offset] (fewer on a short clip)."""
    offsets, d = offset_distances(model, inp, max_offset)
    return OffsetCurve(offsets, d.mean(0))


def load_sync_expert(path) -> SyncExpert:
    """A `save_pretrained` folder of `SyncExpert`, in eval mode (config.json names only the class, no module)."""
    model = SyncExpert.from_pretrained(str(path))
    model.eval()
    return model
