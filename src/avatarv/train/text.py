"""Caption embeddings for stage 1 (text-to-video): every distinct caption is encoded once by the frozen text
encoder (models/text_encoder.py, MiniLM) and looked up per batch, so training never runs the text model."""

from __future__ import annotations

from collections.abc import Callable

import torch


class TextBank:
    def __init__(self, captions: list[str], encode: Callable[[list[str]], torch.Tensor] | None = None,
                 batch: int = 64):
        if encode is None:
            from ..models.text_encoder import encode_text as encode
        uniq = sorted(set(captions))
        feats = [encode(uniq[i : i + batch]) for i in range(0, len(uniq), batch)]
        L = max(f.shape[1] for f in feats)
        emb, mask = [], []
        for f in feats:  # pad every chunk to the longest caption; the mask hides the padding
            pad = L - f.shape[1]
            nonzero = f.abs().sum(-1) > 0
            emb.append(torch.nn.functional.pad(f.float(), (0, 0, 0, pad)))
            mask.append(torch.nn.functional.pad(nonzero, (0, pad)))
        self.index = {c: i for i, c in enumerate(uniq)}
        self.emb = torch.cat(emb)
        self.mask = torch.cat(mask)

    def __call__(self, captions: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        idx = torch.tensor([self.index[c] for c in captions])
        return self.emb[idx], self.mask[idx]

    def to(self, device) -> TextBank:
        self.emb, self.mask = self.emb.to(device), self.mask.to(device)
        return self
