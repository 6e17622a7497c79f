"""avatarv: an open, reproducible implementation of HeyGen's Avatar V talking-avatar system."""

__version__ = "0.1.0"
