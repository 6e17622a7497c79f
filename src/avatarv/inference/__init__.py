"""Inference: the AvatarVPipeline (chunked long-video generation) and the `avatarv generate` command (issue 6)."""
