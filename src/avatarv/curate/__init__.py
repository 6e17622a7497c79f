"""Data curation (seed: "Data: fuel for the model"): the multi-stage filtering cascade, the cross-clip identity
graph, reference→target pairs across scenes, scoring against the synthetic corpus' ground truth, and the Ray
Data scale-out path. Entry point: `curate_corpus` (CLI: `avatarv curate`)."""

from .pipeline import CurateResult, curate_corpus

__all__ = ["CurateResult", "curate_corpus"]
