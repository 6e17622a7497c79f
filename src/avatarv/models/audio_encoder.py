"""Learnable audio encoder: log-mel (B, 80, N) at 100 Hz -> per-video-frame features (B, N//4, audio_dim).

Seed: the audio condition of the generator ("audio drives lips and motion"). A 1-D conv front end, a stride-4
patch conv that lands exactly on the 25 fps video grid, then a small pre-norm transformer for context across
syllables (banded: ±context_frames, no absolute positions, so features do not depend on where a clip starts). It is trained jointly with the DiT (stages 04/05). When pretrained speech weights are supplied
(wav2vec2 / Whisper in a local folder), `load_pretrained_audio_backbone` loads them with transformers and
`PretrainedAudioBackbone.features_per_video_frame` resamples their hidden states to the same video-frame grid.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn

from ..errors import InputError


def sinusoidal_positions(n: int, dim: int, device=None) -> torch.Tensor:
    pos = torch.arange(n, dtype=torch.float32, device=device)[:, None]
    freq = torch.exp(-math.log(10000.0) * torch.arange(0, dim, 2, dtype=torch.float32, device=device) / dim)
    pe = torch.zeros(n, dim, device=device)
    pe[:, 0::2] = torch.sin(pos * freq)
    pe[:, 1::2] = torch.cos(pos * freq[: dim // 2])
    return pe


class AudioEncoder(ModelMixin, ConfigMixin):
    """forward(mel (B, n_mels, N)) -> (B, N // mel_frames_per_video_frame, audio_dim)."""

    @register_to_config
    def __init__(self, n_mels: int = 80, audio_dim: int = 128, layers: int = 2, heads: int = 4,
                 mel_frames_per_video_frame: int = 4, dropout: float = 0.0, mel_mean: float = 0.0,
                 mel_std: float = 1.0, mouth_targets: int = 2, positional: bool = False, context_frames: int = 4):
        super().__init__()
        self.front = nn.Sequential(
            nn.Conv1d(n_mels, audio_dim, 3, padding=1), nn.GELU(),
            nn.Conv1d(audio_dim, audio_dim, 3, padding=1), nn.GELU(),
        )
        k = mel_frames_per_video_frame
        self.patch = nn.Conv1d(audio_dim, audio_dim, k, stride=k)
        layer = nn.TransformerEncoderLayer(audio_dim, heads, 4 * audio_dim, dropout, activation="gelu",
                                           batch_first=True, norm_first=True)
        self.transformer = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(audio_dim)
        # training-only read-out (mouth_open, mouth_width per video frame): A2V supervises the audio features with
        # the mouth they should drive, so they carry articulation before the DiT has learnt to look for it
        self.mouth_head = nn.Linear(audio_dim, mouth_targets)

    def mouth(self, features: torch.Tensor) -> torch.Tensor:
        """(B, F, audio_dim) features → (B, F, mouth_targets) predicted mouth opening/width per video frame."""
        return self.mouth_head(features)

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        if mel.ndim != 3 or mel.shape[1] != self.config.n_mels:
            raise ValueError(f"AudioEncoder: expected mel (B, {self.config.n_mels}, N), got {tuple(mel.shape)}")
        # fixed input standardisation (natural-log mel power sits near -8 ± 3.7 on speech): raw values made the
        # trained encoder's output nearly the same for every clip (audio ignored; Training engineer, issue 7)
        mel = (mel - self.config.mel_mean) / self.config.mel_std
        k = self.config.mel_frames_per_video_frame
        f = mel.shape[-1] // k
        h = self.patch(self.front(mel[..., : f * k])).transpose(1, 2)  # (B, F, D)
        mask = None
        if self.config.positional:
            h = h + sinusoidal_positions(f, h.shape[-1], h.device).to(h.dtype)
        else:
            # shift-invariant features: no absolute positions, each frame attends to ±context_frames only, so a
            # 9-frame training window and a whole inference track give the same feature for the same sound
            # (with absolute positions every chunk after the first got features from positions never trained on)
            i = torch.arange(f, device=h.device)
            mask = (i[:, None] - i[None, :]).abs() > self.config.context_frames  # True = may not attend
        return self.norm(self.transformer(h, mask=mask))


class PretrainedAudioBackbone(nn.Module):
    """A local wav2vec2 / HuBERT / Whisper encoder, frozen by default, giving hidden states per video frame."""

    def __init__(self, model: nn.Module, kind: str, feature_extractor=None, sample_rate: int = 16000):
        super().__init__()
        self.model, self.kind, self.feature_extractor, self.sample_rate = model, kind, feature_extractor, sample_rate

    @property
    def hidden_size(self) -> int:
        cfg = self.model.config
        return int(getattr(cfg, "hidden_size", None) or cfg.d_model)

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        """(B, samples) at 16 kHz -> (B, frames, hidden) at the backbone's own rate (50 Hz for both families)."""
        if self.kind == "whisper":
            feats = self.feature_extractor([a.cpu().numpy() for a in audio], sampling_rate=self.sample_rate,
                                           return_tensors="pt").input_features.to(audio.device)
            hidden = self.model.encoder(feats).last_hidden_state
            n = int(math.ceil(audio.shape[-1] / self.sample_rate * 50))  # Whisper pads to 30 s; keep the real part
            return hidden[:, :n]
        return self.model(audio).last_hidden_state

    def features_per_video_frame(self, audio: np.ndarray | torch.Tensor, sample_rate: int, n_frames: int,
                                 fps: float = 25.0) -> torch.Tensor:
        """Mono audio -> (1, n_frames, hidden): backbone states linearly resampled onto the video-frame grid."""
        from ..media import resample

        audio = np.asarray(audio, dtype=np.float32)
        if sample_rate != self.sample_rate:
            audio = resample(audio, sample_rate, self.sample_rate)
        x = torch.from_numpy(audio)[None].to(next(self.model.parameters()).device)
        hidden = self(x)  # (1, frames, hidden)
        return F.interpolate(hidden.transpose(1, 2), size=n_frames, mode="linear", align_corners=False).transpose(1, 2)


def load_pretrained_audio_backbone(path: str | Path, trainable: bool = False) -> PretrainedAudioBackbone:
    """Load wav2vec2-style (Wav2Vec2/HuBERT/WavLM) or Whisper weights from a local folder (no network)."""
    from transformers import AutoConfig, AutoModel

    path = Path(path)
    if not (path / "config.json").exists():
        raise InputError(path, "no config.json: expected a local wav2vec2/Whisper save_pretrained folder")
    config = AutoConfig.from_pretrained(str(path), local_files_only=True)
    kind = "whisper" if config.model_type == "whisper" else "wav2vec2"
    model = AutoModel.from_pretrained(str(path), local_files_only=True)
    extractor = None
    if kind == "whisper":
        from transformers import WhisperFeatureExtractor

        try:
            extractor = WhisperFeatureExtractor.from_pretrained(str(path), local_files_only=True)
        except OSError:
            extractor = WhisperFeatureExtractor(feature_size=config.num_mel_bins)
    model.train(trainable)
    model.requires_grad_(trainable)
    return PretrainedAudioBackbone(model, kind, extractor)
