"""AvatarTransformer3DModel: the Avatar V diffusion transformer (seed: the generator; ARCHITECTURE.md).

Tokens: video latents patchified 1×p×p plus one motion token per latent frame (MOTION_DIM = 16, latent frame rate),
frame-major. Rectified flow, velocity prediction for both streams (video and motion: the motion stream is denoised
jointly — closed loop — and the reference's clean motion tokens carry the person's style).
Conditioning: adaLN time modulation (noisy frames: t; clean bridge frames and the reference: t = 0), 3-D RoPE
(reference segments at negative times), Sparse Reference Attention over a cached reference, text cross-attention
(stage 1), audio cross-attention in a local window per latent frame. Condition dropout (per sample) for CFG:
`drop_audio` / `drop_text` leave only a learned null key; `drop_reference` hides the reference keys.

Motion rate: `motion` and the returned motion velocity are at the LATENT frame rate (B, T', 16); a video-rate
stream (B, 1 + td·(T'-1), 16) is accepted and pooled (models/latent_time.py).
Audio: (B, F, audio_dim) per video frame; row r ↔ video frame r - audio_lead of this clip/chunk.
Frame condition (`frame_condition`, beyond the seed): a clean latent start frame (training: the clip's first frame;
inference: the reference's first frame, for every chunk) is concatenated channel-wise to EVERY generated frame, plus
a presence flag, as image-to-video models condition (Wan/SVD concatenate the image latent). Copying the scene and face
from it is then a per-token linear map; through attention alone the tiny model had not learned it in its CPU budget
(samples from t = 1 stayed noise; reports/frame_condition.md). The reference pass gets zeros (flag 0), so its cache stays exact.
Motion units: the motion stream runs in per-channel unit-variance units (`normalize_motion`, statistics in config).
Condition prior (`condition_prior_var`, beyond the seed): with a frame condition the network predicts the residual
over the exact velocity of a Gaussian prior x0 ~ N(cond, s²) (`prior_velocity`), so "copy the start frame" is the
model's answer from its first step and the network learns only what differs (mouth, pose). Without it the tiny
SFT model's clean-frame estimate from pure noise was 3x worse than copying the condition after 1500 GPU steps
(latent MSE 0.13 vs 0.044) and samples stayed textured (reports/condition_prior.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from diffusers.utils import BaseOutput
from torch import nn
from torch.utils.checkpoint import checkpoint

from .dit_blocks import AvatarBlock, Segment, TimestepEmbedding, per_frame, sinusoidal_embedding
from .latent_time import as_latent_rate, audio_windows, pool_to_latent_rate
from .reference_attention import (
    attend,
    dense_segment_attention,
    flex_segment_attention,
    full_joint_attention,
    sparse_segment_attention,
)
from .reference_cache import ReferenceCache
from .rope import rope_cos_sin, token_positions

# "full" (no mask) is the naive-concatenation baseline for benchmarks; it is a different model, not an equivalent.
JOINT_ATTENTION = {"dense": dense_segment_attention, "sparse": sparse_segment_attention, "flex": flex_segment_attention,
                   "full": full_joint_attention}


@dataclass
class AvatarTransformerOutput(BaseOutput):
    sample: torch.Tensor  # (B, C, T', H', W') video velocity
    motion: torch.Tensor | None = None  # (B, T', motion_dim) motion velocity, or None without a motion stream


class AvatarTransformer3DModel(ModelMixin, ConfigMixin):
    _supports_gradient_checkpointing = True

    @register_to_config
    def __init__(
        self,
        in_channels: int = 8,
        hidden: int = 128,
        layers: int = 4,
        heads: int = 4,
        patch: int = 2,
        text_dim: int = 384,
        audio_dim: int = 128,
        motion_dim: int = 16,
        mlp_ratio: float = 4.0,
        audio_window: int = 2,
        temporal_downsample: int = 4,
        reference_time_stride: int = 256,
        rope_theta: float = 10000.0,
        sample_size: int = 64,
        frame_condition: bool = False,
        motion_mean: list[float] | None = None,
        motion_std: list[float] | None = None,
        condition_prior_var: float | None = None,
        guidance_embed: bool = False,
    ):
        super().__init__()
        D = hidden
        n_in = (2 * in_channels + 1 if frame_condition else in_channels) * patch * patch
        self.patch_embed = nn.Linear(n_in, D)
        if frame_condition:  # start as a model that ignores the condition (a T2V checkpoint never feeds one)
            with torch.no_grad():
                self.patch_embed.weight[:, in_channels * patch * patch :] = 0
        self.motion_embed = nn.Sequential(nn.Linear(motion_dim, D), nn.SiLU(), nn.Linear(D, D))
        self.motion_type = nn.Parameter(torch.randn(D) * 0.02)
        self.time_embed = TimestepEmbedding(D)
        if guidance_embed:  # a CFG-distilled student: the guidance weights are an input, not extra passes
            self.guidance_mlp = nn.Sequential(nn.Linear(2 * 64, D), nn.SiLU(), nn.Linear(D, D))
            nn.init.zeros_(self.guidance_mlp[-1].weight)  # starts as the model it is distilled from
            nn.init.zeros_(self.guidance_mlp[-1].bias)
        self.text_proj = nn.Sequential(nn.Linear(text_dim, D), nn.GELU(approximate="tanh"), nn.Linear(D, D))
        self.audio_proj = nn.Sequential(nn.Linear(audio_dim, D), nn.GELU(approximate="tanh"), nn.Linear(D, D))
        self.null_text = nn.Parameter(torch.randn(1, 1, text_dim) * 0.02)
        self.null_audio = nn.Parameter(torch.randn(1, 1, audio_dim) * 0.02)
        self.blocks = nn.ModuleList(AvatarBlock(D, heads, mlp_ratio) for _ in range(layers))
        self.norm_out = nn.LayerNorm(D, eps=1e-6, elementwise_affine=False)
        self.out_table = nn.Parameter(torch.randn(1, 1, 2, D) / D**0.5)
        self.proj_out = nn.Linear(D, in_channels * patch * patch)
        self.motion_out = nn.Linear(D, motion_dim)
        self.gradient_checkpointing = False

    def with_config(self, **changes) -> AvatarTransformer3DModel:
        """The same weights under a config with `changes`: statistics a later stage measures (the condition prior's
        s², the motion stream's units) become part of a new model's config instead of a patched one; a module the
        change adds (the guidance embedding) starts as initialised, which leaves the output unchanged."""
        config = {k: v for k, v in {**self.config, **changes}.items() if not k.startswith("_")}
        with torch.random.fork_rng(devices=[]):  # building the copy must not move the global RNG
            new = type(self)(**config)
        missing, unexpected = new.load_state_dict(self.state_dict(), strict=False)
        if unexpected or any(not k.startswith("guidance_mlp.") for k in missing):
            raise ValueError(f"with_config({sorted(changes)}) changes the weights' shapes: missing {missing[:3]}, "
                             f"unexpected {unexpected[:3]}")
        return new.to(device=self.device, dtype=self.dtype)

    # --------------------------------------------------------------------------------------------- motion units
    def _motion_stats(self, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
        if self.config.motion_mean is None or self.config.motion_std is None:
            return None
        return (torch.as_tensor(self.config.motion_mean, device=like.device, dtype=like.dtype),
                torch.as_tensor(self.config.motion_std, device=like.device, dtype=like.dtype))

    def normalize_motion(self, motion: torch.Tensor) -> torch.Tensor:
        """Motion vectors (models/motion.py units) → the unit-variance token units the motion stream lives in.

        The flow noises motion with N(0, 1); in raw units head pose varies by ~0.03 (yaw/30), so the signal was a few
        percent of the noise and the jointly denoised stream came out as jitter (frame-to-frame rms 0.26 vs 0.01 in
        real motion; reports/frame_condition.md). Per-channel mean/std of the training motion (set by stage 3) fix the scale; without
        them (older checkpoints) this is the identity."""
        stats = self._motion_stats(motion)
        return motion if stats is None else (motion - stats[0]) / stats[1]

    def motion_history_tokens(self, history: torch.Tensor) -> torch.Tensor:
        """(B, T_video, 16) video-rate motion history → the latent-rate token units of `encode_reference`'s
        motion_context (one place for training, the proof's sampler and the pipeline)."""
        return self.normalize_motion(pool_to_latent_rate(history, self.config.temporal_downsample))

    def denormalize_motion(self, motion: torch.Tensor) -> torch.Tensor:
        stats = self._motion_stats(motion)
        return motion if stats is None else motion * stats[1] + stats[0]

    # --------------------------------------------------------------------------------------------- condition prior
    def prior_velocity(self, latents: torch.Tensor, timestep: torch.Tensor, cond_frame: torch.Tensor) -> torch.Tensor:
        """E[v | x_t] when x0 ~ N(cond, s²·I) and noise ~ N(0, I) (x_t = (1-t)·x0 + t·noise, v = noise - x0):
        v = ((t - (1-t)·s²)·x_t - t·cond) / ((1-t)²·s² + t²); -x_t at t = 0, x_t - cond at t = 1, finite between.
        `cond_frame` (B, C, H, W) is one mean for every frame; (B, C, T, H, W) a mean per frame (models/motion_plan)."""
        s2 = float(self.config.condition_prior_var)
        B, C, _, H, W = latents.shape
        t = timestep.to(latents.dtype).reshape(B, 1, 1, 1, 1)
        cond = cond_frame.to(latents.dtype).reshape(B, C, -1, H, W)
        return ((t - (1 - t) * s2) * latents - t * cond) / ((1 - t) ** 2 * s2 + t**2)

    def _add_prior(self, out: AvatarTransformerOutput, latents, timestep, cond_frame,
                   prior_mean=None) -> AvatarTransformerOutput:
        if cond_frame is None or not self.config.frame_condition or not self.config.condition_prior_var:
            return out
        t = torch.as_tensor(timestep, device=latents.device, dtype=torch.float32).reshape(-1).expand(latents.shape[0])
        mean = cond_frame if prior_mean is None else prior_mean
        return AvatarTransformerOutput(sample=out.sample + self.prior_velocity(latents, t, mean).to(out.sample.dtype),
                                       motion=out.motion)

    # --------------------------------------------------------------------------------------------- embedding
    def _with_condition(self, latents: torch.Tensor, cond_frame: torch.Tensor | None) -> torch.Tensor:
        """Append [condition frame, presence flag] channels to every frame (zeros and flag 0 without one)."""
        B, C, T, H, W = latents.shape
        if cond_frame is None:
            extra = latents.new_zeros(B, C + 1, T, H, W)
        else:
            cond = cond_frame.to(latents.dtype).reshape(B, C, 1, H, W).expand(B, C, T, H, W)
            extra = torch.cat([cond, latents.new_ones(B, 1, T, H, W)], dim=1)
        return torch.cat([latents, extra], dim=1)

    def _embed(self, latents: torch.Tensor, motion: torch.Tensor | None,
               cond_frame: torch.Tensor | None = None) -> tuple[torch.Tensor, int, int, int]:
        """(B, C, T, H, W) latents (+ (B, T, 16) motion, + (B, C, H, W) condition frame) → (B, T·S, D) frame-major
        tokens, S, h, w."""
        p = self.config.patch
        B, C, T, H, W = latents.shape
        if H % p or W % p:
            raise ValueError(f"latent size {H}x{W} not divisible by patch {p}")
        h, w = H // p, W // p
        if self.config.frame_condition:
            latents = self._with_condition(latents, cond_frame)
            C = latents.shape[1]
        x = latents.reshape(B, C, T, h, p, w, p).permute(0, 2, 3, 5, 1, 4, 6).reshape(B, T, h * w, C * p * p)
        x = self.patch_embed(x.to(self.patch_embed.weight.dtype))
        if motion is not None:
            m = as_latent_rate(motion, T, self.config.temporal_downsample).to(x.dtype)
            x = torch.cat([x, (self.motion_embed(m) + self.motion_type)[:, :, None]], dim=2)
        return x.flatten(1, 2), x.shape[2], h, w

    def _rope(self, n_frames: int, h: int, w: int, time_offset: float, motion: bool, device) -> tuple[torch.Tensor, torch.Tensor]:
        pos = token_positions(n_frames, h, w, time_offset=time_offset, motion_token=motion)
        return rope_cos_sin(pos.to(device), self.config.hidden // self.config.heads, self.config.rope_theta)

    def _segment_time_offset(self, segment: int) -> float:
        """Reference segment k lives at times -(k+1)·stride ...; generation at 0 .. T'-1."""
        return -float((segment + 1) * self.config.reference_time_stride)

    def _clean_mods(self, device, dtype) -> tuple[torch.Tensor, torch.Tensor]:
        block_mod, out_mod = self.time_embed(torch.zeros(1, device=device))
        return block_mod[:, None].to(dtype), out_mod[:, None].to(dtype)

    def _guidance_embedding(self, guidance: torch.Tensor | None, batch: int, device) -> torch.Tensor | None:
        """(B, 2) guidance weights (audio, reference) → (B, D); None for a model without the embedding."""
        if not self.config.guidance_embed:
            return None
        if guidance is None:
            raise ValueError("this transformer is CFG-distilled: pass guidance=(audio, reference) weights")
        g = torch.as_tensor(guidance, device=device, dtype=torch.float32).reshape(-1, 2).expand(batch, 2)
        # weights of ~1–5 spread over the sinusoid's periods like flow times ×100
        feats = torch.cat([sinusoidal_embedding(g[:, 0] / 10, 64), sinusoidal_embedding(g[:, 1] / 10, 64)], -1)
        return self.guidance_mlp(feats.to(self.guidance_mlp[0].weight.dtype))

    def _generation_mods(self, timestep: torch.Tensor, n_frames: int, n_clean: int, dtype,
                         guidance: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-frame modulation (B, T, 6|2, D): the first n_clean (bridge) frames are modulated as clean (t = 0);
        the guidance embedding moves the noisy frames' modulation only (the reference's stays step-independent)."""
        block_mod, out_mod = self.time_embed(timestep, self._guidance_embedding(guidance, len(timestep), timestep.device))
        block_mod, out_mod = block_mod[:, None].to(dtype), out_mod[:, None].to(dtype)
        if n_clean <= 0:
            return block_mod, out_mod
        clean_b, clean_o = self._clean_mods(timestep.device, dtype)
        is_clean = (torch.arange(n_frames, device=timestep.device) < n_clean)[None, :, None, None]
        return torch.where(is_clean, clean_b, block_mod), torch.where(is_clean, clean_o, out_mod)

    def _text_context(self, text, text_mask, drop_text, B: int, device, dtype):
        """(context (B, 1+L, D), mask) with a learned null token first (the only key when text is absent/dropped)."""
        null = self.null_text.expand(B, 1, -1)
        if text is None:
            ctx, mask = null, torch.ones(B, 1, dtype=torch.bool, device=device)
        else:
            ctx = torch.cat([null, text.to(null.dtype)], dim=1)
            keep = torch.ones(B, text.shape[1], dtype=torch.bool, device=device) if text_mask is None else text_mask.bool()
            if drop_text is not None:
                keep = keep & ~drop_text.bool()[:, None]
            mask = torch.cat([torch.ones(B, 1, dtype=torch.bool, device=device), keep], dim=1)
        return self.text_proj(ctx).to(dtype), mask

    def _audio_context(self, audio, n_frames: int, audio_lead: int, drop_audio, B: int, device, dtype):
        """(context (B, T', W+1, D), mask (B, T', W+1)): each latent frame's audio window plus the null key."""
        cfg = self.config
        null = self.audio_proj(self.null_audio).to(dtype)  # (1, 1, D)
        if audio is None:
            return null[:, None].expand(B, n_frames, 1, -1), torch.ones(B, n_frames, 1, dtype=torch.bool, device=device)
        rows = audio_windows(n_frames, cfg.temporal_downsample, cfg.audio_window, audio_lead).to(device)  # (T', W)
        valid = (rows >= 0) & (rows < audio.shape[1])
        feats = self.audio_proj(audio.to(self.null_audio.dtype)).to(dtype)  # (B, F, D)
        ctx = feats[:, rows.clamp(0, audio.shape[1] - 1)]  # (B, T', W, D)
        mask = valid[None].expand(B, -1, -1)
        if drop_audio is not None:
            mask = mask & ~drop_audio.bool()[:, None, None]
        ctx = torch.cat([ctx, null[:, None].expand(B, n_frames, 1, -1)], dim=2)
        mask = torch.cat([mask, torch.ones(B, n_frames, 1, dtype=torch.bool, device=device)], dim=2)
        return ctx, mask

    def _head(self, x: torch.Tensor, out_mod: torch.Tensor, T: int, S: int, h: int, w: int, has_motion: bool) -> AvatarTransformerOutput:
        p, C = self.config.patch, self.config.in_channels
        layout = [Segment(T, S, out_mod)]
        table = self.out_table
        x = per_frame(self.norm_out(x), layout, lambda xf, m: xf * (1 + (m + table)[:, :, 1, None]) + (m + table)[:, :, 0, None])
        x = x.unflatten(1, (T, S))
        video = self.proj_out(x[:, :, : h * w])  # (B, T, hw, C·p·p)
        B = video.shape[0]
        video = video.reshape(B, T, h, w, C, p, p).permute(0, 4, 1, 2, 5, 3, 6).reshape(B, C, T, h * p, w * p)
        motion = self.motion_out(x[:, :, h * w]) if has_motion else None
        return AvatarTransformerOutput(sample=video, motion=motion)

    def _run_block(self, block, *args, **kwargs):
        if self.gradient_checkpointing and torch.is_grad_enabled():
            return checkpoint(block, *args, use_reentrant=False, **kwargs)
        return block(*args, **kwargs)

    # --------------------------------------------------------------------------------------------- reference
    def _motion_tokens(self, motion: torch.Tensor) -> torch.Tensor:
        """(B, Tm, 16) latent-rate motion → (B, Tm, D) motion tokens alone (a motion-only reference segment)."""
        return self.motion_embed(motion.to(self.patch_embed.weight.dtype)) + self.motion_type

    def _segment_tokens(self, latents: torch.Tensor | None, motion: torch.Tensor | None):
        """A clean reference segment → (tokens, T, S, h, w, has_motion); latents None = motion tokens only."""
        if latents is None:
            return self._motion_tokens(motion), motion.shape[1], 1, 0, 0, True
        x, S, h, w = self._embed(latents, motion)
        return x, latents.shape[2], S, h, w, motion is not None

    def _reference_pass(self, latents: torch.Tensor | None, motion: torch.Tensor | None,
                        prior: ReferenceCache | None) -> ReferenceCache:
        """Run one clean reference segment through every block; its queries see itself + the earlier segments."""
        segment = prior.n_segments if prior is not None else 0
        x, T, S, h, w, has_motion = self._segment_tokens(latents, motion)
        if T > self.config.reference_time_stride:  # its RoPE times would run into the next segment's range
            raise ValueError(f"reference of {T} latent frames exceeds reference_time_stride {self.config.reference_time_stride}")
        rope = self._rope(T, h, w, self._segment_time_offset(segment), has_motion, x.device)
        layout = [Segment(T, S, self._clean_mods(x.device, x.dtype)[0])]
        keys, values = [], []
        for i, block in enumerate(self.blocks):
            q, k, v = block.qkv(x, layout, rope)
            pk = prior.keys[i] if prior is not None else None
            pv = prior.values[i] if prior is not None else None
            keys.append(k)
            values.append(v)
            if i + 1 < len(self.blocks):  # the last block's reference outputs feed nothing
                x = block.attention_residual(x, attend(q, k, v, pk, pv), layout)
                x = block.feed_forward(x, layout)
        if prior is None:
            return ReferenceCache(keys, values, [x.shape[1]], [T])
        return prior.appended(keys, values, x.shape[1], T)

    def encode_reference(self, ref_latents: torch.Tensor, ref_motion: torch.Tensor | None = None,
                         motion_context: torch.Tensor | None = None) -> ReferenceCache:
        """Clean reference (B, C, Tr, H, W) (+ motion at latent or video rate) → per-block K/V, computed once.

        `motion_context` (B, Tm, 16), latent rate: the reference clip's longer motion history as a motion-only
        segment (Tm ≫ Tr tokens of one vector each). The seed's style (talking rhythm, sway, nods, blinks) spans
        seconds; the video reference's own motion tokens cover Tr latent frames (0.36 s on the tiny profile)."""
        cache = self._reference_pass(ref_latents, ref_motion, None)
        if motion_context is not None:
            cache = self._reference_pass(None, motion_context, cache)
        return cache

    def extend_reference(self, cache: ReferenceCache, latents: torch.Tensor, motion: torch.Tensor | None = None) -> ReferenceCache:
        """Append a segment (the global appearance anchor) to the cache; the cached K/V are reused, not recomputed."""
        return self._reference_pass(latents, motion, cache)

    # --------------------------------------------------------------------------------------------- forward
    def _prepare(self, latents, timestep, motion, audio, text, n_bridge, text_mask, drop_audio, drop_text, audio_lead,
                 cond_frame=None, guidance=None):
        B, _, T = latents.shape[:3]
        timestep = torch.as_tensor(timestep, device=latents.device, dtype=torch.float32).reshape(-1).expand(B)
        x, S, h, w = self._embed(latents, motion, cond_frame)
        block_mod, out_mod = self._generation_mods(timestep, T, n_bridge, x.dtype, guidance)
        rope = self._rope(T, h, w, 0.0, motion is not None, x.device)
        text_ctx = self._text_context(text, text_mask, drop_text, B, x.device, x.dtype)
        audio_ctx = self._audio_context(audio, T, audio_lead, drop_audio, B, x.device, x.dtype)
        return x, S, h, w, Segment(T, S, block_mod), out_mod, rope, text_ctx, audio_ctx

    def forward(
        self,
        latents: torch.Tensor,
        timestep: torch.Tensor | float,
        motion: torch.Tensor | None = None,
        audio: torch.Tensor | None = None,
        text: torch.Tensor | None = None,
        reference: ReferenceCache | None = None,
        n_bridge: int = 0,
        text_mask: torch.Tensor | None = None,
        drop_audio: torch.Tensor | None = None,
        drop_text: torch.Tensor | None = None,
        drop_reference: torch.Tensor | None = None,
        audio_lead: int = 0,
        cond_frame: torch.Tensor | None = None,
        prior_mean: torch.Tensor | None = None,
        guidance: torch.Tensor | None = None,
        return_dict: bool = True,
    ):
        """Velocity of the generation tokens; the reference enters only through its cached K/V. `cond_frame`
        (B, C, H', W') is used by models built with `frame_condition` and ignored by others; `prior_mean`
        (B, C, T, H', W') replaces it as the condition prior's mean per frame (models/motion_plan.py)."""
        T = latents.shape[2]
        x, S, h, w, seg, out_mod, rope, text_ctx, audio_ctx = self._prepare(
            latents, timestep, motion, audio, text, n_bridge, text_mask, drop_audio, drop_text, audio_lead, cond_frame,
            guidance)
        keep = None if drop_reference is None else ~drop_reference.bool()
        for i, block in enumerate(self.blocks):
            if reference is None:
                def attention(q, k, v):
                    return attend(q, k, v)
            else:
                def attention(q, k, v, pk=reference.keys[i], pv=reference.values[i]):
                    return attend(q, k, v, pk, pv, keep)
            x = self._run_block(block, x, [seg], rope, attention, text_ctx, audio_ctx, S)
        out = self._add_prior(self._head(x, out_mod, T, S, h, w, motion is not None), latents, timestep, cond_frame,
                              prior_mean)
        return out if return_dict else (out.sample, out.motion)

    def forward_uncached(
        self,
        latents: torch.Tensor,
        timestep: torch.Tensor | float,
        motion: torch.Tensor | None = None,
        audio: torch.Tensor | None = None,
        text: torch.Tensor | None = None,
        reference_segments: list[tuple[torch.Tensor, torch.Tensor | None]] = (),
        n_bridge: int = 0,
        attention: str = "dense",
        text_mask: torch.Tensor | None = None,
        drop_audio: torch.Tensor | None = None,
        drop_text: torch.Tensor | None = None,
        audio_lead: int = 0,
        cond_frame: torch.Tensor | None = None,
        prior_mean: torch.Tensor | None = None,
        guidance: torch.Tensor | None = None,
    ) -> AvatarTransformerOutput:
        """The same model without the cache: reference segments and generation tokens form one joint sequence
        that goes through every layer at every call, self-attention under the segment mask (dense / sparse / flex).
        Slow; it exists to prove the cached path exact and to benchmark against."""
        B, T = latents.shape[0], latents.shape[2]
        x, S, h, w, seg, out_mod, rope, text_ctx, audio_ctx = self._prepare(
            latents, timestep, motion, audio, text, n_bridge, text_mask, drop_audio, drop_text, audio_lead, cond_frame,
            guidance)
        xs, layout, cos, sin = [], [], [], []
        clean = self._clean_mods(x.device, x.dtype)[0]
        for k, (rl, rm) in enumerate(reference_segments):
            xr, Tr, Sr, hr, wr, has_motion = self._segment_tokens(rl, rm)  # rl None: a motion-only segment
            xs.append(xr.expand(B, -1, -1))
            layout.append(Segment(Tr, Sr, clean))
            c, s = self._rope(Tr, hr, wr, self._segment_time_offset(k), has_motion, x.device)
            cos.append(c)
            sin.append(s)
        n_ref = sum(t.shape[1] for t in xs)
        x = torch.cat([*xs, x], dim=1)
        layout.append(seg)
        rope = (torch.cat([*cos, rope[0]]), torch.cat([*sin, rope[1]]))
        lengths = [s.n_tokens for s in layout]
        joint = JOINT_ATTENTION[attention]
        for block in self.blocks:
            q, k, v = block.qkv(x, layout, rope)
            x = block.attention_residual(x, joint(q, k, v, lengths), layout)
            xg = block.cross_attention(x[:, n_ref:], text_ctx, audio_ctx, S)
            x = block.feed_forward(torch.cat([x[:, :n_ref], xg], dim=1), layout)
        return self._add_prior(self._head(x[:, n_ref:], out_mod, T, S, h, w, motion is not None), latents, timestep,
                               cond_frame, prior_mean)


def transformer_from_config(dit_cfg, in_channels: int, sample_size: int = 64, temporal_downsample: int = 4) -> AvatarTransformer3DModel:
    """Build the DiT from the typed `DiTConfig` section (config.py) and the VAE's latent channels."""
    if dit_cfg.patch[0] != 1 or dit_cfg.patch[1] != dit_cfg.patch[2]:
        raise ValueError(f"dit.patch {dit_cfg.patch}: only 1×p×p patches are supported")
    return AvatarTransformer3DModel(
        in_channels=in_channels, hidden=dit_cfg.hidden, layers=dit_cfg.layers, heads=dit_cfg.heads,
        patch=dit_cfg.patch[1], text_dim=dit_cfg.text_dim, audio_dim=dit_cfg.audio_dim, motion_dim=dit_cfg.motion_dim,
        mlp_ratio=dit_cfg.mlp_ratio, audio_window=dit_cfg.audio_window,
        reference_time_stride=dit_cfg.reference_time_stride, temporal_downsample=temporal_downsample,
        sample_size=sample_size, frame_condition=dit_cfg.frame_condition)
