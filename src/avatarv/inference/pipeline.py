"""AvatarVPipeline: reference video + speech → talking video of the audio's length (seed: inference, long video).

Read top-down:
 1. check inputs; resize the reference to the model's size; encode it with the VAE;
 2. audio → log-mel → audio encoder → features per video frame (the waveform padded to the padded video length);
 3. the reference runs through the DiT ONCE (`encode_reference`): its per-block K/V serve every step, CFG branch
    and chunk;
 4. chunks of `chunk_latent_frames` latent frames; chunk k+1 starts with the last `bridge_latent_frames` latent
    frames of chunk k as clean bridge frames; after chunk 0 its first `anchor_latent_frames` latent frames are
    appended to the cached reference (global appearance anchor, one more reference pass over those frames only);
 5. each chunk: Euler steps of FlowMatchEulerDiscreteScheduler on video latents and motion jointly (closed-loop
    motion stream), CFG on audio and reference (diffusion/guidance.py); a model built with `frame_condition` sees
    the reference's first frame concatenated to every frame of every chunk (training: the clip's start frame);
 6. decode the whole latent sequence once, trim the padded tail so video length == audio length.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import DiffusionPipeline
from diffusers.utils import BaseOutput
from tqdm.auto import tqdm

from ..diffusion.guidance import Guidance, guided_velocity
from ..models.audio_features import log_mel
from ..models.latent_time import (
    as_latent_rate,
    expand_to_video_rate,
    latent_frames_for,
    pool_to_latent_rate,
    video_frames_for,
)
from ..models.motion import apply_motion_calibration, eye_track
from ..models.motion_plan import motion_plan, shifted_condition

CONDITIONS_FILE = "generator.json"  # written next to transformer/ by the training stages (train/generator.py)

AUDIO_RATE = 16000


@dataclass
class AvatarVPipelineOutput(BaseOutput):
    frames: np.ndarray  # (T, H, W, 3) uint8, T = round(audio seconds · fps)
    motion: np.ndarray  # (T, 16) generated motion stream, per video frame
    latents: torch.Tensor  # (1, C, T', h, w) the generated latent sequence (padded tail removed)


def chunk_starts(n_latent: int, chunk: int, bridge: int) -> list[int]:
    """Start latent frame of each chunk; consecutive chunks overlap by `bridge` frames; the last may overhang."""
    if not 0 <= bridge < chunk:
        raise ValueError(f"bridge_latent_frames {bridge} must be in [0, chunk_latent_frames {chunk})")
    n_chunks = 1 + max(0, math.ceil((n_latent - chunk) / (chunk - bridge)))
    return [k * (chunk - bridge) for k in range(n_chunks)]


def square_resize(frames: np.ndarray, size: int) -> torch.Tensor:
    """(T, H, W, 3) uint8 → (1, 3, T, size, size) in [-1, 1]: centre square crop, then area/bilinear resize."""
    _, h, w, _ = frames.shape
    s = min(h, w)
    y0, x0 = (h - s) // 2, (w - s) // 2
    x = torch.from_numpy(np.array(frames[:, y0 : y0 + s, x0 : x0 + s])).permute(0, 3, 1, 2).float()
    x = F.interpolate(x, size=(size, size), mode="area" if s > size else "bilinear", align_corners=None if s > size else False)
    return (x / 127.5 - 1.0).permute(1, 0, 2, 3)[None]


class AvatarVPipeline(DiffusionPipeline):
    model_cpu_offload_seq = "audio_encoder->transformer->vae"

    def __init__(self, vae, transformer, audio_encoder, scheduler, fps: int = 25, chunk_latent_frames: int = 4,
                 bridge_latent_frames: int = 1, anchor_latent_frames: int = 1, reference_latent_frames: int = 2,
                 steps: int = 12, cfg_audio: float = 2.0, cfg_reference: float = 1.5, motion_stream: bool = True,
                 reference_attention: bool = True, first_frame_bridge: bool = False,
                 motion_calibration: dict | None = None):
        super().__init__()
        self.register_modules(vae=vae, transformer=transformer, audio_encoder=audio_encoder, scheduler=scheduler)
        # the last four say how the transformer was trained (a stage's generator.json, train/generator.py): an A2V
        # model never saw motion tokens or a reference and always had the face image as a clean first latent frame
        self.register_to_config(fps=fps, chunk_latent_frames=chunk_latent_frames, bridge_latent_frames=bridge_latent_frames,
                                anchor_latent_frames=anchor_latent_frames, reference_latent_frames=reference_latent_frames,
                                steps=steps, cfg_audio=cfg_audio, cfg_reference=cfg_reference, motion_stream=motion_stream,
                                reference_attention=reference_attention, first_frame_bridge=first_frame_bridge,
                                motion_calibration=motion_calibration)

    # ------------------------------------------------------------------------------------------ pieces
    def reference_frames_used(self) -> tuple[int, int]:
        """(video frames the reference latents come from, video frames of reference motion the pipeline reads):
        callers measure the reference motion over the second — the motion history is the reference clip's first
        `motion_context_frames` frames, as in training (stage 3), not just the few frames of the video reference."""
        n_video = 1 + self.vae.config.temporal_downsample * (self.config.reference_latent_frames - 1)
        history = self.transformer.config.motion_context_frames if self.config.motion_stream else 0
        return n_video, max(n_video, history)

    def _audio_features(self, audio: np.ndarray, sample_rate: int, n_video_padded: int, device, dtype) -> torch.Tensor:
        """(1, n_video_padded, audio_dim): silence-padded waveform → log-mel → audio encoder, one row per frame."""
        from ..media import resample

        audio = resample(np.asarray(audio, np.float32), sample_rate, AUDIO_RATE)
        need = int(math.ceil(n_video_padded / self.config.fps * AUDIO_RATE)) + AUDIO_RATE // 100 * 4
        audio = np.pad(audio, (0, max(0, need - len(audio))))
        mel = torch.from_numpy(log_mel(audio, AUDIO_RATE))[None].to(device, self.audio_encoder.dtype)
        feats = self.audio_encoder(mel).to(dtype)
        if feats.shape[1] < n_video_padded:
            feats = F.pad(feats, (0, 0, 0, n_video_padded - feats.shape[1]))
        return feats[:, :n_video_padded]

    def _sigmas(self, steps: int) -> list[float]:
        """Uniform sigmas 1 → 1/steps (the scheduler applies its shift and appends 0): every step moves."""
        return np.linspace(1.0, 1.0 / steps, steps).tolist()

    # ------------------------------------------------------------------------------------------ call
    @torch.no_grad()
    def __call__(
        self,
        reference_frames: np.ndarray,
        audio: np.ndarray,
        sample_rate: int,
        reference_motion: np.ndarray | None = None,
        num_inference_steps: int | None = None,
        guidance: Guidance | None = None,
        generator: torch.Generator | None = None,
        progress: bool = True,
        use_reference_cache: bool = True,
    ) -> AvatarVPipelineOutput:
        cfg, tr, vae = self.config, self.transformer, self.vae
        device, dtype = tr.device, tr.dtype
        td = vae.config.temporal_downsample
        steps = num_inference_steps or cfg.steps
        use_motion, use_ref_attention = cfg.motion_stream, cfg.reference_attention
        use_reference_cache = use_reference_cache and use_ref_attention
        guidance = guidance or Guidance(audio=cfg.cfg_audio, reference=cfg.cfg_reference if use_ref_attention else 1.0)

        # 1. inputs and reference latents
        ref = np.asarray(reference_frames)
        ref = ref[None] if ref.ndim == 3 else ref
        if ref.ndim != 4 or ref.shape[-1] != 3 or ref.dtype != np.uint8 or len(ref) == 0:
            raise ValueError(f"reference_frames must be (T, H, W, 3) or (H, W, 3) uint8, got {ref.shape} {ref.dtype}")
        audio = np.asarray(audio, np.float32)
        if audio.ndim != 1 or audio.size == 0 or sample_rate <= 0:
            raise ValueError(f"audio must be non-empty mono samples at a positive rate, got {audio.shape} @ {sample_rate}")
        n_ref_latent = min(cfg.reference_latent_frames, 1 + (len(ref) - 1) // td)  # whole VAE groups only
        n_ref_video = video_frames_for(n_ref_latent, td)
        ref_pix = square_resize(ref[:n_ref_video], tr.config.sample_size).to(device, vae.dtype)
        ref_latents = vae.encode(ref_pix).to(dtype)
        ref_motion = None
        if reference_motion is not None and use_motion:
            # measured motion (MediaPipe) → the representation the transformer was trained on (models/motion.py)
            measured = apply_motion_calibration(np.asarray(reference_motion, np.float32), cfg.motion_calibration)
            ref_motion = tr.normalize_motion(torch.as_tensor(measured[:n_ref_video])[None].to(device, dtype))
        ref_context = None  # the reference's motion history (models/dit.py encode_reference), as trained in stage 3
        if ref_motion is not None and tr.config.motion_context_frames > 0:
            history = torch.as_tensor(measured[: tr.config.motion_context_frames])[None].to(device, dtype)
            ref_context = tr.motion_history_tokens(history)

        # 2. lengths, chunk plan, audio features
        n_video = max(1, int(round(len(audio) / sample_rate * cfg.fps)))
        n_latent = latent_frames_for(n_video, td)
        T_c, b = cfg.chunk_latent_frames, cfg.bridge_latent_frames
        starts = chunk_starts(n_latent, T_c, b)
        n_latent_padded = starts[-1] + T_c
        feats = self._audio_features(audio, sample_rate, video_frames_for(n_latent_padded, td), device, dtype)

        # 3. the reference, once
        cache = tr.encode_reference(ref_latents, ref_motion, ref_context) if use_reference_cache else None
        segments = [(ref_latents, ref_motion)] + ([(None, ref_context)] if ref_context is not None else [])
        segments = segments if use_ref_attention else []

        C, h, w = ref_latents.shape[1], ref_latents.shape[3], ref_latents.shape[4]
        # frame condition (models built with it): the reference's first frame, the same clean frame for every chunk,
        # as training conditions every window of a clip on the clip's start frame (WindowSet.clip_start)
        cond = ref_latents[:, :, 0]
        shift = None  # a head-motion plan moving the condition prior (models/motion_plan.py), as trained in stage 3
        if ref_motion is not None and tr.config.motion_shift and tr.config.condition_prior_var:
            # the face's track as the reference video shows it (turns included), in latent pixels of the square crop;
            # not the calibrated pose channels: measured yaw vs ground truth r = -0.15 (stop 14)
            track = eye_track(np.asarray(reference_motion, np.float32)) * (h / min(ref.shape[1:3]))
            plan = motion_plan(track[: max(tr.config.motion_context_frames, n_ref_video)],
                               video_frames_for(n_latent_padded, td), generator, fps=cfg.fps)
            plan_latent = pool_to_latent_rate(torch.as_tensor(plan)[None], td)[:, :n_latent_padded]
            shift = (plan_latent - torch.as_tensor(plan[:1])[:, None]).to(device)
        motion_dim = tr.config.motion_dim
        margin = tr.config.audio_window
        chunks_latents, chunks_motion = [], []
        prev_lat = prev_mot = None
        bar = tqdm(total=len(starts) * steps, desc="avatarv generate", disable=not progress, unit="step")

        # 4.-5. chunks
        for k, s in enumerate(starts):
            lat = torch.randn((1, C, T_c, h, w), generator=generator, device="cpu").to(device, dtype)
            mot = torch.randn((1, T_c, motion_dim), generator=generator, device="cpu").to(device, dtype)
            n_bridge = 0 if k == 0 else b
            if n_bridge:
                lat[:, :, :b], mot[:, :b] = prev_lat[:, :, -b:], prev_mot[:, -b:]
                bridge_lat, bridge_mot = lat[:, :, :b].clone(), mot[:, :b].clone()
            elif cfg.first_frame_bridge:  # the reference's first frame opens the video, clean
                n_bridge = 1
                lat[:, :, :1] = ref_latents[:, :, :1]
                if ref_motion is not None:
                    mot[:, :1] = as_latent_rate(ref_motion, n_ref_latent, td)[:, :1]
                bridge_lat, bridge_mot = lat[:, :, :1].clone(), mot[:, :1].clone()
            lead = min(td * s, td - 1 + margin)
            a0 = td * s - lead
            a_chunk = feats[:, a0 : td * (s + T_c - 1) + margin + 1]

            prior_mean = None if shift is None else shifted_condition(cond, shift[:, s : s + T_c]).to(dtype)
            self.scheduler.set_timesteps(sigmas=self._sigmas(steps), device=device)
            for t in self.scheduler.timesteps:
                sigma = (t / self.scheduler.config.num_train_timesteps).reshape(1).to(device)

                def predict(use_ref: bool, use_audio: bool):
                    kw = dict(audio=a_chunk if use_audio else None, n_bridge=n_bridge, audio_lead=lead, cond_frame=cond,
                              prior_mean=prior_mean)
                    m_in = mot if use_motion else None
                    if use_reference_cache:
                        out = tr(lat, sigma, m_in, reference=cache if use_ref else None, **kw)
                    else:
                        out = tr.forward_uncached(lat, sigma, m_in, reference_segments=segments if use_ref else [], **kw)
                    # without a motion stream the motion state is carried unchanged (zero velocity)
                    return out.sample, (out.motion if use_motion else torch.zeros_like(mot))

                v_lat, v_mot = guided_velocity(predict, guidance)
                packed = torch.cat([lat.flatten(), mot.flatten()])
                v = torch.cat([v_lat.flatten(), v_mot.flatten()])
                packed = self.scheduler.step(v.float(), t, packed.float()).prev_sample.to(dtype)
                lat = packed[: lat.numel()].view_as(lat)
                mot = packed[lat.numel():].view_as(mot)
                if n_bridge:  # bridge frames are given, not generated: keep them exactly
                    lat[:, :, :n_bridge], mot[:, :n_bridge] = bridge_lat, bridge_mot
                bar.update(1)

            chunks_latents.append(lat if k == 0 else lat[:, :, b:])
            chunks_motion.append(mot if k == 0 else mot[:, b:])
            prev_lat, prev_mot = lat, mot
            a = cfg.anchor_latent_frames
            if k == 0 and a > 0 and len(starts) > 1:  # global appearance anchor for all later chunks
                if use_reference_cache:
                    cache = tr.extend_reference(cache, lat[:, :, :a], mot[:, :a] if use_motion else None)
                if use_ref_attention:
                    segments = segments + [(lat[:, :, :a], mot[:, :a] if use_motion else None)]
        bar.close()

        # 6. decode once, trim to the audio's length
        latents = torch.cat(chunks_latents, dim=2)[:, :, :n_latent]
        motion = torch.cat(chunks_motion, dim=1)[:, :n_latent]
        video = vae.decode(latents.to(vae.dtype))[0, :, :n_video]  # (3, T, H, W)
        frames = ((video.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(1, 2, 3, 0).cpu().numpy()
        motion_video = expand_to_video_rate(tr.denormalize_motion(motion.float()), td, n_video)[0].cpu().numpy()
        return AvatarVPipelineOutput(frames=frames, motion=motion_video, latents=latents)


def pipeline_from_config(cfg, vae, transformer, audio_encoder, conditions: dict | None = None) -> AvatarVPipeline:
    """Assemble the pipeline from trained parts and the typed config (dit section holds the inference knobs);
    `conditions` (a training stage's generator.json) says which conditions the transformer was trained with."""
    from ..diffusion.scheduler import make_scheduler

    d = cfg.dit
    c = {"motion_stream": True, "reference_attention": True, "first_frame_bridge": False, **(conditions or {})}
    return AvatarVPipeline(vae=vae, transformer=transformer, audio_encoder=audio_encoder,
                           scheduler=make_scheduler(d.flow_shift), fps=cfg.corpus.fps,
                           chunk_latent_frames=d.chunk_latent_frames, bridge_latent_frames=d.bridge_latent_frames,
                           anchor_latent_frames=d.anchor_latent_frames,
                           reference_latent_frames=d.reference_latent_frames, steps=d.steps, cfg_audio=d.cfg_audio,
                           cfg_reference=d.cfg_reference, motion_stream=bool(c["motion_stream"]),
                           reference_attention=bool(c["reference_attention"]),
                           first_frame_bridge=bool(c["first_frame_bridge"]), motion_calibration=c.get("motion_calibration"))


def checkpoint_layout(path) -> str | None:
    """'pipeline' (save_pretrained of AvatarVPipeline), 'generator' (train/: transformer/ + audio_encoder/), or None."""
    from pathlib import Path

    path = Path(path)
    if (path / "model_index.json").exists():
        return "pipeline"
    if (path / "transformer" / "config.json").exists() and (path / "audio_encoder" / "config.json").exists():
        return "generator"
    return None


def load_pipeline(path, cfg) -> AvatarVPipeline:
    """A saved pipeline, or a training stage's generator dir assembled with the trained VAE (its own vae/ if
    present, else runs/vae/final or runs/vae) and the scheduler/chunking knobs of params.yaml."""
    from pathlib import Path

    from ..errors import AvatarVError
    from ..models.audio_encoder import AudioEncoder
    from ..models.dit import AvatarTransformer3DModel
    from ..models.vae import load_vae
    from ..paths import RUNS

    path = Path(path)
    layout = checkpoint_layout(path)
    if layout == "pipeline":
        return AvatarVPipeline.from_pretrained(str(path))
    if layout is None:
        raise AvatarVError(f"{path}: no trained checkpoint (neither model_index.json nor transformer/ + audio_encoder/)")
    vae_dirs = [path / "vae", RUNS / "vae" / "final", RUNS / "vae"]
    vae_dir = next((d for d in vae_dirs if (d / "config.json").exists()), vae_dirs[1])
    vae = load_vae(vae_dir)
    transformer = AvatarTransformer3DModel.from_pretrained(str(path / "transformer")).eval()
    audio_encoder = AudioEncoder.from_pretrained(str(path / "audio_encoder"), low_cpu_mem_usage=False).eval()
    return pipeline_from_config(cfg, vae, transformer, audio_encoder, read_conditions(path))


def read_conditions(path) -> dict | None:
    """A generator dir's generator.json (how its stage trained the transformer), None if absent."""
    from pathlib import Path

    from ..errors import InputError

    f = Path(path) / CONDITIONS_FILE
    if not f.exists():
        return None
    try:
        conditions = json.loads(f.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise InputError(f, f"unreadable generator conditions ({e.__class__.__name__}: {str(e)[:80]})") from None
    if not isinstance(conditions, dict):
        raise InputError(f, "generator conditions must be a JSON object")
    return conditions

