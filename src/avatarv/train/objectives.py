"""The rectified-flow objective of stages 1–3 and the human-aware auxiliary losses of personality SFT (seed:
"Human-aware auxiliary losses ... face quality, lip sync, identity similarity, and motion fidelity").

Flow convention (COMMON.md): x_t = (1 − t)·x0 + t·noise, v = noise − x0, the model predicts v, x0_hat = x_t − t·v.
Loss terms (each returned separately so curves and ablations can show them):
- `flow`: velocity MSE over the generated (non-bridge) latent frames;
- `face` / `lip`: the same squared error averaged over the face / mouth box mapped onto the latent grid
  (boxes from the corpus landmarks) — extra weight on those regions;
- `motion`: velocity MSE on the motion stream (the motion tokens are noised with the same t);
- `audio_mouth`: MSE of the audio encoder's mouth read-out (models/audio_encoder.py) against the clip's
  mouth_open / mouth_width per video frame (motion channels 5, 6) — supervision of the audio features themselves;
- `sync`: 1 − cosine of a frozen sync expert's lower-face and audio embeddings of the decoded predicted clean
  clip (SyncLoss), weighted by (1 − t);
- `identity`: 1 − cosine between a frozen face-embedding network's embeddings of the face in the decoded
  predicted clean frame and in the reference frame, weighted by (1 − t) because x0_hat is a blur at high noise.
The total is `flow + Σ weight·term` with weights from params.yaml `train.<stage>.losses` (0 = off).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..diffusion.flow import sample_timesteps
from ..inference.conditions import ConditionSpec, teacher_forced
from ..models.latent_time import pool_to_latent_rate
from .generator import unwrap


@dataclass
class FlowSpec:
    """Which conditions a stage feeds (saved with its pipeline) and which loss terms it adds."""

    conditions: ConditionSpec
    bridge_prob: float = 0.0  # chance that a batch gets one clean bridge frame (without a first-frame bridge)
    cond_dropout: float = 0.1  # per-sample, per-condition drop rate (classifier-free guidance)
    timestep_shift: float = 1.0
    losses: dict[str, float] = field(default_factory=dict)  # face, lip, identity, motion weights


def box_mask(boxes: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """(B, T, 4) normalised [x0,y0,x1,y1] → (B, T, h, w) {0,1}: grid cells whose centre lies in the box."""
    ys = (torch.arange(h, device=boxes.device, dtype=boxes.dtype) + 0.5) / h
    xs = (torch.arange(w, device=boxes.device, dtype=boxes.dtype) + 0.5) / w
    x0, y0, x1, y1 = (boxes[..., i, None, None] for i in range(4))
    inside = (xs >= x0) & (xs <= x1) & (ys[:, None] >= y0) & (ys[:, None] <= y1)
    return inside.to(boxes.dtype)


def crop_boxes(frames: torch.Tensor, boxes: torch.Tensor, size: int = 32) -> torch.Tensor:
    """Differentiable square crops: frames (B, 3, H, W), boxes (B, 4) normalised → (B, 3, size, size)."""
    cx, cy = (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2
    half = torch.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]).clamp(min=0.05) / 2
    theta = torch.zeros(len(frames), 2, 3, device=frames.device, dtype=frames.dtype)
    theta[:, 0, 0], theta[:, 1, 1] = 2 * half, 2 * half
    theta[:, 0, 2], theta[:, 1, 2] = 2 * cx - 1, 2 * cy - 1
    grid = F.affine_grid(theta, (len(frames), 3, size, size), align_corners=False)
    return F.grid_sample(frames, grid, align_corners=False, padding_mode="border")


def crop_rects(frames: torch.Tensor, boxes: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Differentiable crops of (possibly non-square) boxes: frames (N, C, H, W), boxes (N, 4) normalised
    [x0,y0,x1,y1] → (N, C, h, w) with size = (w, h); outside the frame the border repeats."""
    cx, cy = (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2
    theta = torch.zeros(len(frames), 2, 3, device=frames.device, dtype=frames.dtype)
    theta[:, 0, 0] = (boxes[:, 2] - boxes[:, 0]).clamp(min=0.02)
    theta[:, 1, 1] = (boxes[:, 3] - boxes[:, 1]).clamp(min=0.02)
    # output pixel j samples the input at x0 + j·(box width)/w pixels, the convention of faces/crop.crop_resize
    # (cv2.warpAffine) that the sync expert learnt from; the plain affine_grid mapping sits half a pixel off
    H, W = frames.shape[-2:]
    theta[:, 0, 2] = 2 * cx - 1 + 1.0 / W - theta[:, 0, 0] / size[0]
    theta[:, 1, 2] = 2 * cy - 1 + 1.0 / H - theta[:, 1, 1] / size[1]
    grid = F.affine_grid(theta, (len(frames), frames.shape[1], size[1], size[0]), align_corners=False)
    return F.grid_sample(frames, grid, align_corners=False, padding_mode="border")


def lower_face(face_box: torch.Tensor) -> torch.Tensor:
    """SyncNet's lip region from a face box (the same rule as faces/crop.mouth_box), normalised coords."""
    x0, y0, x1, y1 = face_box.unbind(-1)
    w, h = x1 - x0, y1 - y0
    return torch.stack([x0 + 0.1 * w, y0 + 0.5 * h, x1 - 0.1 * w, y1 + 0.05 * h], -1)


def tracked_face_boxes(frames: torch.Tensor) -> torch.Tensor:
    """(B, T, H, W, 3) uint8 ground-truth frames → (B, T, 4) normalised face boxes from the eval face tracker.

    The sync expert learnt its lip crops from the tracker's boxes; the corpus' own face boxes sit ~1 px lower on a
    64-px face, enough to make the expert blind (1 − cos matched 0.83 vs shuffled audio 0.80; tracked: 0.53 vs 0.81)."""
    from ..faces import track_face

    H, W = frames.shape[2:4]
    scale = torch.tensor([W, H, W, H], dtype=torch.float32)
    return torch.stack([torch.as_tensor(np.asarray(track_face(f.cpu().numpy()).boxes, np.float32)) / scale for f in frames])


@dataclass
class SyncLoss:
    """Frozen VAE decoder + frozen audio-visual sync expert → lip-sync term (Wav2Lip's "expert" loss).

    A pixel or latent loss barely rewards a mouth that moves with speech (the mouth is a few latent cells; at
    300 CPU steps the tiny A2V ignored even an oracle mouth signal: loss gain 5e-6). The expert embeds every
    5-frame lower-face window of the decoded predicted clean clip and the matching audio window; the term is
    1 − cosine, weighted by (1 − t) because x0_hat is a blur at high noise. The expert is trained on the training
    identities with another seed than stage 10_eval's judge, so the generator is not graded by its own teacher."""

    vae: Any
    expert: Any
    time_weighted: bool = True

    def __call__(self, x0_hat: torch.Tensor, t: torch.Tensor, batch: dict[str, Any]) -> torch.Tensor:
        cos = self.window_cosines(self.vae.decode(x0_hat.float()), batch)
        if cos is None:
            return x0_hat.new_zeros(())
        return ((1 - cos) * ((1 - t) if self.time_weighted else torch.ones_like(t))[:, None]).mean()

    def window_cosines(self, video: torch.Tensor, batch: dict[str, Any]) -> torch.Tensor | None:
        """(B, n) cosine between every 5-frame lower-face window of `video` (B, 3, Tv, H, W) in [-1, 1] and its
        aligned audio window; None when the clip is shorter than one window."""
        from ..models.sync_expert import CROP, MELS_PER_FRAME, WINDOW

        B, _, Tv, H, W = video.shape
        T = min(Tv, batch["face_box"].shape[1], batch["mel"].shape[-1] // MELS_PER_FRAME)
        if T < WINDOW:
            return None
        frames = video[:, :, :T].transpose(1, 2).reshape(B * T, 3, H, W)
        tracked = batch["tracked_box"][:, :T] if "tracked_box" in batch else tracked_face_boxes(batch["frames"][:, :T])
        boxes = lower_face(tracked.to(frames).reshape(B * T, 4))
        grey = (crop_rects(frames, boxes, CROP) + 1) / 2  # (B·T, 3, h, w) in [0, 1]
        grey = (grey * grey.new_tensor([0.299, 0.587, 0.114])[None, :, None, None]).sum(1).unflatten(0, (B, T))
        # the expert's per-clip normalisation (models/sync_expert.prepare): temporal mean removed, one global scale
        crops = (grey - grey.mean(1, keepdim=True)) / (grey.flatten(1).std(1)[:, None, None, None] + 1e-3)
        starts = torch.arange(T - WINDOW + 1, device=crops.device)
        win = crops[:, starts[:, None] + torch.arange(WINDOW, device=crops.device)[None]]  # (B, n, 5, h, w)
        v = self.expert.embed_visual(win.flatten(0, 1)).unflatten(0, (B, len(starts)))
        with torch.no_grad():
            mel = batch["mel"][..., : T * MELS_PER_FRAME].float()
            mel = (mel - mel.mean(-1, keepdim=True)) / (mel.flatten(1).std(1)[:, None, None] + 1e-3)
            a = self.expert.embed_audio(mel[:, None])  # (B, n, D)
        return (v * a).sum(-1)


@dataclass
class IdentityLoss:
    """Frozen VAE decoder + frozen face embedder → identity term (see module docstring)."""

    vae: Any
    embedder: Any

    def __call__(self, x0_hat: torch.Tensor, t: torch.Tensor, batch: dict[str, Any]) -> torch.Tensor:
        td = self.vae.config.temporal_downsample
        video = self.vae.decode(x0_hat[:, :, :2].float())  # frames 0..td: frame td is never a bridge frame
        frame = video[:, :, td]
        crop = crop_boxes(frame, batch["face_box"][:, td].float(), self.embedder.config.crop)
        with torch.no_grad():
            ref = batch["ref_frames"][:, 0].permute(0, 3, 1, 2).float() / 127.5 - 1.0
            ref_emb = self.embedder(crop_boxes(ref, batch["ref_face_box"][:, 0].float(), self.embedder.config.crop))
        emb = self.embedder(crop)
        cos = (emb * ref_emb).sum(-1)
        return ((1 - cos) * (1 - t)).mean()


MOUTH_CHANNELS = slice(5, 7)  # mouth_open, mouth_width in the 16-D motion vector (models/motion.py)


def audio_mouth_loss(model, batch: dict[str, Any]) -> torch.Tensor:
    """MSE between the audio encoder's per-frame mouth read-out and the clip's mouth channels."""
    from .generator import unwrap

    encoder = unwrap(model).audio_encoder
    pred = encoder.mouth(encoder(batch["mel"].float()))
    target = batch["motion"].float()[:, : pred.shape[1], MOUTH_CHANNELS]
    return F.mse_loss(pred[:, : target.shape[1]], target)


def condition_kwargs(transformer, c: ConditionSpec, batch: dict[str, Any], n_frames: int, td: int,
                     text_lookup: Callable[[list[str]], tuple[torch.Tensor, torch.Tensor]] | None = None) -> dict[str, Any]:
    """The conditioning keyword arguments of one `AvatarGenerator` call on a training batch (teacher forcing,
    inference/conditions.py): frame condition and prior mean, text, log-mel, reference segments."""
    text = text_lookup(batch["captions"]) if c.text and text_lookup is not None else None
    window = teacher_forced(transformer, c, batch, n_frames, td, text=text)
    kw: dict[str, Any] = window.dit_kwargs()
    if c.audio:
        kw["mel"] = batch["mel"].float()
    if c.reference:
        kw.update(ref_latents=window.ref_latents, ref_motion=window.ref_motion, ref_motion_context=window.ref_context)
    return kw


def flow_loss(
    model,
    batch: dict[str, Any],
    gen: torch.Generator,
    spec: FlowSpec,
    *,
    text_lookup: Callable[[list[str]], tuple[torch.Tensor, torch.Tensor]] | None = None,
    identity: IdentityLoss | None = None,
    sync: SyncLoss | None = None,
    td: int = 4,
) -> tuple[torch.Tensor, dict[str, float]]:
    """One stochastic evaluation of the stage objective on a micro-batch (randomness only from `gen`)."""
    x0 = batch["latents"].float()
    B, _, T, H, W = x0.shape
    dev = x0.device
    t = sample_timesteps(B, gen, spec.timestep_shift, dev)
    noise = torch.randn(x0.shape, generator=gen, device=dev)
    c = spec.conditions
    n_bridge = int(c.first_frame_bridge)
    if n_bridge == 0 and spec.bridge_prob > 0 and T > 1:
        n_bridge = int(torch.rand((), generator=gen, device=dev) < spec.bridge_prob)
    n_bridge = min(n_bridge, T - 1)
    te = t.view(B, 1, 1, 1, 1)
    x_t = (1 - te) * x0 + te * noise
    if n_bridge:
        x_t = torch.cat([x0[:, :, :n_bridge], x_t[:, :, n_bridge:]], dim=2)
    v = noise - x0

    def drop() -> torch.Tensor:
        return torch.rand(B, generator=gen, device=dev) < spec.cond_dropout

    tr = unwrap(model).transformer
    kw = {"n_bridge": n_bridge, **condition_kwargs(tr, c, batch, T, td, text_lookup)}
    if kw.get("text") is not None:
        kw["drop_text"] = drop()
    if c.audio:
        kw["drop_audio"] = drop()
    if c.reference:
        kw["drop_reference"] = drop()
    m_v = None
    if c.motion:
        m0 = tr.normalize_motion(pool_to_latent_rate(batch["motion"].float(), td)[:, :T])
        m_noise = torch.randn(m0.shape, generator=gen, device=dev)
        m_t = (1 - t.view(B, 1, 1)) * m0 + t.view(B, 1, 1) * m_noise
        if n_bridge:
            m_t = torch.cat([m0[:, :n_bridge], m_t[:, n_bridge:]], dim=1)
        kw["motion"] = m_t
        m_v = m_noise - m0
    out = model(x_t, t, **kw)
    pred = out.sample.float()

    valid = torch.ones(B, T, device=dev)
    valid[:, :n_bridge] = 0
    err = ((pred - v) ** 2).mean(1)  # (B, T, H, W)
    vmask = valid[:, :, None, None].expand_as(err)
    terms: dict[str, torch.Tensor] = {"flow": (err * vmask).sum() / vmask.sum()}
    w = spec.losses
    if w.get("face", 0) > 0 or w.get("lip", 0) > 0:
        for name, key in (("face", "face_box"), ("lip", "mouth_box")):
            if w.get(name, 0) > 0:
                box = pool_to_latent_rate(batch[key].float(), td)[:, :T]
                m = box_mask(box, H, W) * vmask
                terms[name] = (err * m).sum() / m.sum().clamp(min=1.0)
    if m_v is not None and out.motion is not None:
        merr = ((out.motion.float() - m_v) ** 2).mean(-1)
        terms["motion"] = (merr * valid).sum() / valid.sum()
    if c.audio and w.get("audio_mouth", 0) > 0 and "motion" in batch:
        terms["audio_mouth"] = audio_mouth_loss(model, batch)
    if identity is not None and w.get("identity", 0) > 0 and "ref_frames" in batch and T > 1:
        x0_hat = x_t - te * pred
        terms["identity"] = identity(x0_hat, t, batch)
    if sync is not None and w.get("sync", 0) > 0:
        x0_hat = x_t - te * pred
        if n_bridge:  # bridge frames are given clean
            x0_hat = torch.cat([x0[:, :, :n_bridge], x0_hat[:, :, n_bridge:]], dim=2)
        terms["sync"] = sync(x0_hat, t, batch)
    total = terms["flow"]
    for name, val in terms.items():
        if name != "flow":
            total = total + float(w.get(name, 1.0)) * val
    return total, {k: float(v.detach()) for k, v in terms.items()}
