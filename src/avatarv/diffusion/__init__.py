"""Rectified flow: noising, velocity targets, losses, guidance and the sampler (issue 6)."""
