"""The trainable generator of stages 1–3 and LoRA: the DiT plus the audio encoder, optimised as one module.

One `nn.Module` so that accelerate prepares, clips, checkpoints and (DDP/FSDP) wraps both together. Saved in the
diffusers component layout a complete `AvatarVPipeline` (`save`), whose transformer/ and audio_encoder/ the next stage starts from.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ..config import Config
from ..errors import InputError
from ..inference.conditions import ConditionSpec
from ..models.audio_encoder import AudioEncoder
from ..models.dit import AvatarTransformer3DModel, transformer_from_config


class AvatarGenerator(nn.Module):
    def __init__(self, transformer: AvatarTransformer3DModel, audio_encoder: AudioEncoder):
        super().__init__()
        self.transformer = transformer
        self.audio_encoder = audio_encoder

    @classmethod
    def from_config(cls, cfg: Config, latent_channels: int, temporal_downsample: int | None = None) -> AvatarGenerator:
        """`temporal_downsample`: the trained VAE's (default params.yaml `vae`), so latent-time maps match it."""
        d = cfg.dit
        td = cfg.vae.temporal_downsample if temporal_downsample is None else temporal_downsample
        # sample_size = the size the final stage trains at: inference resizes references to it
        transformer = transformer_from_config(d, latent_channels, sample_size=cfg.train.sft.size, temporal_downsample=td)
        # centre the log-mel (natural-log power sits near -8 on the corpus' speech); keep its scale: dividing by its
        # std (3.7) shrank the conv front-end's output below the encoder's unit-amplitude positional code and made
        # the features nearly clip-independent (per-clip feature difference at init 0.08 vs 0.32 centred only)
        audio = AudioEncoder(audio_dim=d.audio_dim, mel_mean=-8.0, mel_std=1.0)
        return cls(transformer, audio)

    def forward(self, latents, timestep, *, mel=None, ref_latents=None, ref_motion=None, ref_motion_context=None,
                **dit_kwargs):
        """The whole conditioned DiT call in one `forward`, so that DDP/FSDP see every trainable use of the
        weights: log-mel → audio features, clean reference → cached K/V (with gradients in training), then the
        transformer on the noisy generation tokens."""
        audio = self.audio_encoder(mel) if mel is not None else None
        reference = None
        if ref_latents is not None:
            reference = self.transformer.encode_reference(ref_latents, ref_motion, ref_motion_context)
        return self.transformer(latents, timestep, audio=audio, reference=reference, **dit_kwargs)

    def save(self, path: str | Path, vae, cfg: Config, conditions: ConditionSpec, steps: int | None = None) -> Path:
        """A complete pipeline (`AvatarVPipeline.save_pretrained`: transformer, VAE, audio encoder, scheduler, the
        sampling knobs of params.yaml, or `steps` for a distilled student, and the conditions this stage trained
        with), written beside `path` and renamed onto it, so a failed save never leaves half a checkpoint."""
        import shutil

        from ..inference.pipeline import pipeline_from_config

        path = Path(path)
        tmp = path.with_name(path.name + ".partial")
        shutil.rmtree(tmp, ignore_errors=True)
        pipe = pipeline_from_config(cfg, vae, self.transformer, self.audio_encoder, conditions, steps=steps)
        pipe.save_pretrained(str(tmp))
        shutil.rmtree(path, ignore_errors=True)
        tmp.rename(path)
        return path

    @classmethod
    def load(cls, path: str | Path, device: str | torch.device = "cpu") -> AvatarGenerator:
        path = Path(path)
        if not (path / "transformer" / "config.json").exists():
            raise InputError(path, "no saved generator here (expected transformer/ and audio_encoder/)")
        t = AvatarTransformer3DModel.from_pretrained(str(path / "transformer"))
        # low_cpu_mem_usage=False: encoders saved before a head was added (mouth read-out) load with it initialised
        a = AudioEncoder.from_pretrained(str(path / "audio_encoder"), low_cpu_mem_usage=False)
        return cls(t, a).to(device)


def unwrap(model: nn.Module) -> AvatarGenerator:
    """The AvatarGenerator inside a DDP/FSDP/compile wrapper."""
    while not isinstance(model, AvatarGenerator) and hasattr(model, "module"):
        model = model.module
    return model
