"""The reference K/V cache: what makes Sparse Reference Attention cheap at inference (seed: "computed once").

`AvatarTransformer3DModel.encode_reference` runs the clean reference tokens R (reference-video latents + their
motion tokens) through every block once and keeps each block's K_R, V_R (after q/k-norm and RoPE). Every later
denoising step, every CFG branch and every chunk reuses them; per step the linear layers then see only G.

Why this is exact (not an approximation), all three conditions hold by construction in models/dit.py:
1. R is modulated with the timestep embedding of t = 0 (R is clean), so R's adaLN shift/scale/gate do not depend
   on the denoising step;
2. R gets no audio or text cross-attention (those inputs change per chunk / per CFG branch), so nothing
   step- or chunk-dependent enters R's residual stream;
3. R queries attend to R keys only (Sparse Reference Attention), never to G, so R's hidden states — hence its
   K/V in every block — are a function of the reference alone.
Segments: the cache holds ordered segments (R0 = reference video, R1 = global appearance anchor = the first latent
frames of the first generated chunk, appended once by `extend_reference`). A later segment's queries see earlier
segments' keys, never the reverse, so appending never changes what was cached. Memory: 2·layers·N_R·d_model·bytes.
Imports only torch.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class ReferenceCache:
    keys: list[torch.Tensor]  # per block: (B_ref, heads, N_R, head_dim), after q/k-norm and RoPE
    values: list[torch.Tensor]  # per block: (B_ref, heads, N_R, head_dim)
    segment_tokens: list[int] = field(default_factory=list)  # tokens of each segment, in order
    segment_frames: list[int] = field(default_factory=list)  # latent frames of each segment

    @property
    def n_tokens(self) -> int:
        return int(sum(self.segment_tokens))

    @property
    def n_segments(self) -> int:
        return len(self.segment_tokens)

    @property
    def batch_size(self) -> int:
        return self.keys[0].shape[0]

    def nbytes(self) -> int:
        """Memory held by the cached K/V."""
        return sum(t.numel() * t.element_size() for t in (*self.keys, *self.values))

    def to(self, *args, **kwargs) -> ReferenceCache:
        return ReferenceCache([k.to(*args, **kwargs) for k in self.keys], [v.to(*args, **kwargs) for v in self.values],
                              list(self.segment_tokens), list(self.segment_frames))

    def detach(self) -> ReferenceCache:
        return ReferenceCache([k.detach() for k in self.keys], [v.detach() for v in self.values],
                              list(self.segment_tokens), list(self.segment_frames))

    def appended(self, keys: list[torch.Tensor], values: list[torch.Tensor], n_tokens: int, n_frames: int) -> ReferenceCache:
        """A new cache with one more segment (the old tensors are not modified)."""
        return ReferenceCache([torch.cat([a, b], dim=2) for a, b in zip(self.keys, keys)],
                              [torch.cat([a, b], dim=2) for a, b in zip(self.values, values)],
                              [*self.segment_tokens, n_tokens], [*self.segment_frames, n_frames])
