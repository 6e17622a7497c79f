"""avatarv: an open, reproducible implementation of HeyGen's Avatar V talking-avatar system."""

from . import quiet  # noqa: F401  (before any third-party import)

__version__ = "0.1.0"


def __getattr__(name: str):
    """`from avatarv import AvatarVPipeline` without importing torch/diffusers for every `import avatarv`."""
    if name == "AvatarVPipeline":
        from .inference.pipeline import AvatarVPipeline

        return AvatarVPipeline
    raise AttributeError(f"module 'avatarv' has no attribute {name!r}")
