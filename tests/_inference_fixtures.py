"""The tiny pipeline parts the inference tests share (seeded, CPU, a few thousand parameters)."""

import torch


def tiny_pipeline_parts():
    """(vae, transformer, audio_encoder), built in this order after torch.manual_seed(0)."""
    from avatarv.models.audio_encoder import AudioEncoder
    from avatarv.models.dit import AvatarTransformer3DModel
    from avatarv.models.vae import AvatarVideoVAE

    torch.manual_seed(0)
    vae = AvatarVideoVAE(latent_channels=4, base_channels=8, spatial_downsample=4).eval()
    audio_encoder = AudioEncoder(audio_dim=8, layers=1, heads=2).eval()
    dit = AvatarTransformer3DModel(in_channels=4, hidden=32, layers=2, heads=2, audio_dim=8, sample_size=32).eval()
    return vae, dit, audio_encoder


def tiny_pipeline(parts, **conditions):
    """A pipeline over `parts` whose transformer was trained with `conditions` (ConditionSpec fields)."""
    from avatarv.diffusion.scheduler import make_scheduler
    from avatarv.inference.conditions import ConditionSpec
    from avatarv.inference.pipeline import AvatarVPipeline

    vae, dit, audio_encoder = parts
    return AvatarVPipeline(vae, dit, audio_encoder, make_scheduler(), chunk_latent_frames=4, bridge_latent_frames=1,
                           anchor_latent_frames=1, reference_latent_frames=2, steps=2,
                           conditions=ConditionSpec(**conditions).to_dict())
