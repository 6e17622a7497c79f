"""AvatarVPipeline: reference video + speech → talking video of the audio's length (seed: inference, long video).

Five lines for a user (a stage's `runs/<stage>/final` is a complete saved pipeline):

    from avatarv import AvatarVPipeline
    pipe = AvatarVPipeline.from_pretrained("runs/sft/final")
    out = pipe(reference="ref.mp4", audio="speech.wav")
    out.save("talking.mp4")  # or diffusers.utils.export_to_video(out.video, "silent.mp4", fps=out.fps)

Read top-down (`__call__`):
 1. inputs (file paths, PIL images or arrays); the reference's motion measured, calibrated and planned by the motion
    planner (inference/motion_planner.py); the reference resized to the model's size and encoded by the VAE;
 2. audio → log-mel → audio encoder → features per video frame (the waveform padded to the padded video length);
 3. the reference runs through the DiT ONCE (`encode_reference`): its per-block K/V serve every step, CFG branch
    and chunk; what the DiT is conditioned on is built by inference/conditions.py, as in training;
 4. chunks of `chunk_latent_frames` latent frames; chunk k+1 starts with the last `bridge_latent_frames` latent
    frames of chunk k as clean bridge frames; after chunk 0 its first `anchor_latent_frames` latent frames are
    appended to the cached reference (global appearance anchor, one more reference pass over those frames only);
 5. each chunk is one `sample_window`: Euler steps of FlowMatchEulerDiscreteScheduler on video latents and motion
    jointly (closed-loop motion stream), CFG on audio and reference (diffusion/guidance.py). The stages' samples
    and proofs call the same `sample_window`;
 6. decode the whole latent sequence once, trim the padded tail so video length == audio length;
 7. when the pipeline has a `refiner` (stage 08, models/refiner.py), upscale the generated frames ×factor (tiny:
    64 → 256 px), the reference's frames reaching it through Sparse Reference Attention;
 8. with `crop="face"` (user footage), steps 1-7 run in the face-aligned working space (faces/align.py: the
    reference's face carried onto the corpus's framing) and the generated face is pasted back into the reference's
    own frames at their size.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import DiffusionPipeline
from diffusers.utils import BaseOutput
from tqdm.auto import tqdm

from ..diffusion.guidance import Guidance, guided_velocity
from ..faces.align import align_clip, loop_indices, paste_back, rescale

# imported for their side effect: from_pretrained resolves saved components by module name
from ..models import audio_encoder as _audio_encoder  # noqa: F401
from ..models import dit as _dit  # noqa: F401
from ..models import refiner as _refiner  # noqa: F401
from ..models import vae as _vae  # noqa: F401
from ..models.audio_features import log_mel
from ..models.latent_time import as_latent_rate, expand_to_video_rate, latent_frames_for, video_frames_for
from .conditions import ConditionSpec, WindowConditions, from_reference, prior_mean
from .motion_planner import MotionPlanner

AUDIO_RATE = 16000


@dataclass
class AvatarVPipelineOutput(BaseOutput):
    frames: np.ndarray  # (T, H, W, 3) uint8, T = round(audio seconds · fps); the source's size with crop="face"
    motion: np.ndarray  # (T, 16) generated motion stream, per video frame
    latents: torch.Tensor  # (1, C, T', h, w) the generated latent sequence (padded tail removed)
    fps: int = 25
    audio: np.ndarray | None = None  # the driving speech, mono float32 (muxed by `save`)
    sample_rate: int | None = None
    face_frames: np.ndarray | None = None  # (T, s, s, 3) what the model generated, in its working space
    reference_face: np.ndarray | None = None  # (s, s, 3) the reference's first frame in that space
    note: str = ""  # what the face alignment chose (e.g. the largest of several faces)

    @property
    def video(self) -> list:
        """The frames as PIL images: what diffusers.utils.export_to_video takes."""
        from PIL import Image

        return [Image.fromarray(f) for f in self.frames]

    def save(self, path: str | Path, fps=None, metadata: dict[str, str] | None = None, watermark: bool = True) -> Path:
        """An mp4 with the speech muxed in, written atomically (media.write_video), at `fps` (any rational rate:
        Fraction(30000, 1001), 29.97, "30000/1001"; default the generation rate). At another rate the media
        normaliser picks, for each output instant, the generated frame nearest in time; the audio is unchanged and
        the video keeps following its length. Every saved video carries the invisible avatarv watermark
        (media/watermark.py; `avatarv verify` finds it) and says in its container tags that it is AI-generated
        (`metadata` adds tags: model hash, reference hash, ...)."""
        from ..media import as_rate, retime, write_video
        from ..media.watermark import embed

        rate = as_rate(fps if fps is not None else self.fps)
        frames = self.frames
        if rate != as_rate(self.fps):
            has_audio = self.audio is not None and self.sample_rate
            seconds = len(self.audio) / self.sample_rate if has_audio else len(frames) / self.fps
            frames = retime(frames, self.fps, rate, max(1, int(round(seconds * float(rate)))))
        if watermark:
            frames = embed(frames)
        tags = {"comment": "AI-generated video (avatarv)", "avatarv_ai_generated": "true", **(metadata or {})}
        write_video(path, frames, rate, self.audio, self.sample_rate, metadata=tags)
        return Path(path)


class StepCallback:
    """The part of a tqdm bar the sampler uses (`update`, `close`), reporting (done, total) to a callable."""

    def __init__(self, total: int, callback: Callable[[int, int], None]):
        self.n, self.total, self.callback = 0, total, callback

    def update(self, n: int = 1) -> None:
        self.n += n
        self.callback(self.n, self.total)

    def close(self) -> None:
        pass


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


def decode_frames(vae, latents: torch.Tensor) -> torch.Tensor:
    """(B, C, T', h, w) latents → (B, T, H, W, 3) uint8 frames on the CPU."""
    with torch.no_grad():
        video = vae.decode(latents.to(vae.dtype)).float()
    return ((video.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 4, 1).cpu()


def saved_conditions(path) -> ConditionSpec:
    """The conditions a saved pipeline's transformer was trained with (its model_index.json)."""
    return ConditionSpec.from_dict(json.loads((Path(path) / "model_index.json").read_text()).get("conditions"))


def as_frames(reference) -> np.ndarray:
    """A reference as (T, H, W, 3) uint8: a video/photo path, a PIL image or a list of them, or an array."""
    if isinstance(reference, (str, Path)):
        from .inputs import read_reference

        return read_reference(reference).frames
    if hasattr(reference, "convert"):  # a PIL image
        reference = [reference]
    if isinstance(reference, (list, tuple)) and reference and hasattr(reference[0], "convert"):
        reference = np.stack([np.asarray(im.convert("RGB")) for im in reference])
    ref = np.asarray(reference)
    ref = ref[None] if ref.ndim == 3 else ref
    if ref.ndim != 4 or ref.shape[-1] != 3 or ref.dtype != np.uint8 or len(ref) == 0:
        raise ValueError(f"reference frames must be (T, H, W, 3) or (H, W, 3) uint8, got {ref.shape} {ref.dtype}")
    return ref


def as_speech(audio, sample_rate: int | None) -> tuple[np.ndarray, int]:
    """Speech as (mono float32 samples, rate): an audio/video file path, or samples with their rate."""
    if isinstance(audio, (str, Path)):
        from .inputs import read_speech

        return read_speech(audio)
    audio = np.asarray(audio, np.float32)
    if audio.ndim != 1 or audio.size == 0 or not sample_rate or sample_rate <= 0:
        raise ValueError(f"audio must be non-empty mono samples at a positive rate, got {audio.shape} @ {sample_rate}")
    return audio, int(sample_rate)


CROPS = ("face", "full")


def source_name_of(x, default: str) -> str:
    """What a one-line error calls an input: its path, else `default`."""
    return str(x) if isinstance(x, (str, Path)) else default


class AvatarVPipeline(DiffusionPipeline):
    model_cpu_offload_seq = "audio_encoder->transformer->vae"
    # the super-resolution refiner (models/refiner.py, stage 08): when present, the output is refined
    _optional_components: ClassVar[list[str]] = ["refiner"]

    def __init__(self, vae, transformer, audio_encoder, scheduler, fps: int = 25, chunk_latent_frames: int = 4,
                 bridge_latent_frames: int = 1, anchor_latent_frames: int = 1, reference_latent_frames: int = 2,
                 steps: int = 12, cfg_audio: float = 2.0, cfg_reference: float = 1.5, conditions: dict | None = None,
                 refiner=None):
        super().__init__()
        self.register_modules(vae=vae, transformer=transformer, audio_encoder=audio_encoder, scheduler=scheduler,
                              refiner=refiner)
        # `conditions`: how the stage that saved this pipeline trained the transformer (inference/conditions.py)
        self.register_to_config(fps=fps, chunk_latent_frames=chunk_latent_frames, bridge_latent_frames=bridge_latent_frames,
                                anchor_latent_frames=anchor_latent_frames, reference_latent_frames=reference_latent_frames,
                                steps=steps, cfg_audio=cfg_audio, cfg_reference=cfg_reference,
                                conditions=ConditionSpec.from_dict(conditions).to_dict())

    # ------------------------------------------------------------------------------------------ pieces
    @property
    def conditions(self) -> ConditionSpec:
        return ConditionSpec.from_dict(self.config.conditions)

    @property
    def motion_planner(self) -> MotionPlanner:
        return MotionPlanner(calibration=self.conditions.motion_calibration, fps=self.config.fps)

    def reference_frames_used(self) -> tuple[int, int]:
        """(video frames the reference latents come from, video frames of reference motion the pipeline reads):
        the motion history is the reference clip's first `motion_context_frames` frames, as in training (stage 3),
        not just the few frames of the video reference."""
        n_video = 1 + self.vae.config.temporal_downsample * (self.config.reference_latent_frames - 1)
        spec = self.conditions
        history = spec.motion_context_frames if spec.motion else 0
        return n_video, max(n_video, history)

    def default_guidance(self) -> Guidance:
        return Guidance(audio=self.config.cfg_audio,
                        reference=self.config.cfg_reference if self.conditions.reference else 1.0)

    def audio_features(self, audio: np.ndarray, sample_rate: int, n_video_padded: int, device, dtype) -> torch.Tensor:
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

    def measure_reference_motion(self, frames: np.ndarray, pad_to: int = 0) -> np.ndarray | None:
        """Measured (uncalibrated) motion of the style source over the frames the pipeline reads; a source shorter
        than `pad_to` frames (the video reference's) holds its last pose."""
        motion = self.motion_planner.measure(frames[: self.reference_frames_used()[1]])
        if motion is not None and len(motion) < pad_to:
            motion = np.concatenate([motion, np.repeat(motion[-1:], pad_to - len(motion), 0)])
        return motion

    @staticmethod
    def sigmas(steps: int) -> list[float]:
        """Uniform sigmas 1 → 1/steps (the scheduler applies its shift and appends 0): every step moves."""
        return np.linspace(1.0, 1.0 / steps, steps).tolist()

    def velocity(self, lat: torch.Tensor, mot: torch.Tensor, sigma: torch.Tensor, conditions: WindowConditions, *,
                 audio: torch.Tensor | None = None, audio_lead: int = 0, n_bridge: int = 0, reference_cache=None,
                 use_reference_cache: bool = True, guidance: Guidance | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The (guided) velocity of video latents and motion tokens at time `sigma`: one pass for a CFG-distilled
        transformer (the weights are an input), else the guidance branches of diffusion/guidance.py. Not under
        no_grad, so RL fine-tuning (train/rlhf.py) differentiates the very function the sampler integrates."""
        tr, spec = self.transformer, self.conditions
        guidance = guidance or self.default_guidance()
        use_motion = spec.motion
        weights = guidance.as_tensor(len(lat), tr.device) if tr.config.guidance_embed else None

        def predict(use_ref: bool, use_audio: bool):
            kw = dict(audio=audio if use_audio else None, n_bridge=n_bridge, audio_lead=audio_lead,
                      guidance=weights, **conditions.dit_kwargs())
            m_in = mot if use_motion else None
            if use_reference_cache:
                out = tr(lat, sigma, m_in, reference=reference_cache if use_ref else None, **kw)
            else:
                out = tr.forward_uncached(lat, sigma, m_in, reference_segments=conditions.segments() if use_ref else [],
                                          **kw)
            # without a motion stream the motion state is carried unchanged (zero velocity)
            return out.sample, (out.motion if use_motion else torch.zeros_like(mot))

        if tr.config.guidance_embed:  # a CFG-distilled student: the weights are an input, one pass
            return predict(True, True)
        return guided_velocity(predict, guidance)

    @torch.no_grad()
    def sample_window(self, latents: torch.Tensor, motion: torch.Tensor, conditions: WindowConditions, *,
                      audio: torch.Tensor | None = None, audio_lead: int = 0, n_bridge: int = 0,
                      reference_cache=None, use_reference_cache: bool = True, steps: int | None = None,
                      guidance: Guidance | None = None, progress_bar=None, noise_level: float = 0.0,
                      generator: torch.Generator | None = None, trace: list | None = None
                      ) -> tuple[torch.Tensor, torch.Tensor]:
        """Integrate one window from noise (t = 1) to clean (t = 0): Euler steps of the scheduler on the video
        latents (B, C, T, h, w) and the motion tokens (B, T, 16) jointly, CFG over audio and reference. The first
        `n_bridge` latent frames (and motion tokens) of the inputs are given clean and kept exactly. The reference
        enters as `reference_cache` (from `encode_reference`) or, with `use_reference_cache=False`, as the uncached
        joint sequence of `conditions.segments()` (slow; the exactness reference).

        `noise_level` η > 0 samples the SDE with the ODE's marginals instead (diffusion/flow.py `sde_mean`; noise
        from `generator`) on every step but the last, which stays an Euler step so the output is a clean sample;
        `trace` (a list) then receives one dict per stochastic step: times, transition std, the state before, the
        transition mean and the state after (what train/rlhf.py needs for log-likelihoods)."""
        from ..diffusion.flow import sde_mean, sde_std

        tr = self.transformer
        device, dtype = tr.device, tr.dtype
        steps = steps or self.config.steps
        if noise_level > 0 and n_bridge:
            raise ValueError("SDE sampling (noise_level > 0) is for windows without bridge frames")
        bridge_lat, bridge_mot = latents[:, :, :n_bridge].clone(), motion[:, :n_bridge].clone()
        lat, mot = latents, motion
        self.scheduler.set_timesteps(sigmas=self.sigmas(steps), device=device)
        grid = [float(s) for s in self.scheduler.sigmas]
        for i, t in enumerate(self.scheduler.timesteps):
            sigma = (t / self.scheduler.config.num_train_timesteps).reshape(1).to(device)
            v_lat, v_mot = self.velocity(lat, mot, sigma, conditions, audio=audio, audio_lead=audio_lead,
                                         n_bridge=n_bridge, reference_cache=reference_cache,
                                         use_reference_cache=use_reference_cache, guidance=guidance)
            if noise_level > 0 and i < len(grid) - 2:
                s, s_next = grid[i], grid[i + 1]
                sd, std = sde_std(s, s_next, noise_level, grid[1])
                mean_lat = sde_mean(lat.float(), v_lat.float(), s, s_next, sd)
                mean_mot = sde_mean(mot.float(), v_mot.float(), s, s_next, sd)
                new_lat = mean_lat + std * torch.randn(lat.shape, generator=generator, device=device)
                new_mot = mean_mot + std * torch.randn(mot.shape, generator=generator, device=device)
                if trace is not None:
                    trace.append({"t": s, "t_next": s_next, "sigma": sd, "std": std, "lat": lat, "mot": mot,
                                  "mean_lat": mean_lat, "mean_mot": mean_mot, "next_lat": new_lat, "next_mot": new_mot})
                lat, mot = new_lat.to(dtype), new_mot.to(dtype)
                if self.scheduler.step_index is None:  # the scheduler's own step counter stays on its grid
                    self.scheduler._init_step_index(t)
                self.scheduler._step_index += 1
                if progress_bar is not None:
                    progress_bar.update(1)
                continue
            packed = torch.cat([lat.flatten(), mot.flatten()])
            v = torch.cat([v_lat.flatten(), v_mot.flatten()])
            packed = self.scheduler.step(v.float(), t, packed.float()).prev_sample.to(dtype)
            lat = packed[: lat.numel()].view_as(lat)
            mot = packed[lat.numel():].view_as(mot)
            if n_bridge:  # bridge frames are given, not generated: keep them exactly
                lat[:, :, :n_bridge], mot[:, :n_bridge] = bridge_lat, bridge_mot
            if progress_bar is not None:
                progress_bar.update(1)
        return lat, mot

    # ------------------------------------------------------------------------------------------ call
    @torch.no_grad()
    def __call__(
        self,
        reference,
        audio,
        sample_rate: int | None = None,
        reference_motion: np.ndarray | None = None,
        motion_reference=None,
        measure_motion: bool = True,
        num_inference_steps: int | None = None,
        guidance: Guidance | None = None,
        generator: torch.Generator | None = None,
        progress: bool | Callable[[int, int], None] = True,
        use_reference_cache: bool = True,
        refine: bool = True,
        crop: str = "face",
        source_name: str | None = None,
    ) -> AvatarVPipelineOutput:
        """`reference`: video/photo path, PIL image(s) or (T, H, W, 3) uint8 frames; `audio`: a path or mono samples
        at `sample_rate`. `reference_motion` (T, 16): the style source's measured motion; None measures it (MediaPipe)
        on `motion_reference` (another person's clip: motion style transfer) or on the reference, unless
        `measure_motion` is False. `crop="face"` (real footage) generates in the face-aligned working space and
        pastes the face back into the reference's frames at their size (faces/align.py); `crop="full"` takes
        frames already framed as the corpus frames them (the evaluation's clips) and returns the model's frames.
        `source_name` names the reference in errors when it is given as frames (default: its path, or "reference").
        `refine`: run the pipeline's refiner, if it has one (the model's frames ×factor in size, before paste-back).
        `progress`: a tqdm bar (True), none (False), or a callable told (steps done, steps in all) after every
        denoising step (the demo app's progress value)."""
        cfg, spec, tr, vae = self.config, self.conditions, self.transformer, self.vae
        device, dtype = tr.device, tr.dtype
        td = vae.config.temporal_downsample
        steps = num_inference_steps or cfg.steps
        use_reference_cache = use_reference_cache and spec.reference
        guidance = guidance or self.default_guidance()
        planner = self.motion_planner

        # 1. inputs (aligned to the corpus's face framing), the reference's motion and latents
        if crop not in CROPS:
            raise ValueError(f"crop must be one of {CROPS}, got {crop!r}")
        ref = source_frames = as_frames(reference)
        audio, sample_rate = as_speech(audio, sample_rate)
        aligned, notes = None, []
        if crop == "face":
            aligned = align_clip(ref, 2 * tr.config.sample_size, fps=cfg.fps, source=source_name or source_name_of(reference, "reference"))
            ref = aligned.frames
        if reference_motion is None and measure_motion and spec.motion:
            source = ref if motion_reference is None else as_frames(motion_reference)
            if motion_reference is not None and crop == "face":
                source = align_clip(source, 2 * tr.config.sample_size, fps=cfg.fps,
                                    source=source_name_of(motion_reference, "motion reference")).frames
            reference_motion = self.measure_reference_motion(source, min(self.reference_frames_used()[0], len(ref)))
            if reference_motion is None:
                notes.append("the reference's head motion could not be measured (no face mesh); motion comes from "
                             "the model alone")
        n_ref_latent = min(cfg.reference_latent_frames, 1 + (len(ref) - 1) // td)  # whole VAE groups only
        n_ref_video = video_frames_for(n_ref_latent, td)
        ref_pix = square_resize(ref[:n_ref_video], tr.config.sample_size).to(device, vae.dtype)
        ref_latents = vae.encode(ref_pix).to(dtype)
        measured = ref_motion = history = None
        if reference_motion is not None and spec.motion:
            measured = np.asarray(reference_motion, np.float32)
            calibrated = torch.as_tensor(planner.calibrate(measured))[None].to(device, dtype)
            ref_motion, history = calibrated[:, :n_ref_video], calibrated
        base = from_reference(tr, spec, ref_latents, ref_motion, history)

        # 2. lengths, chunk plan, audio features
        n_video = max(1, int(round(len(audio) / sample_rate * cfg.fps)))
        n_latent = latent_frames_for(n_video, td)
        T_c, b = cfg.chunk_latent_frames, cfg.bridge_latent_frames
        starts = chunk_starts(n_latent, T_c, b)
        n_latent_padded = starts[-1] + T_c
        feats = self.audio_features(audio, sample_rate, video_frames_for(n_latent_padded, td), device, dtype)

        # 3. the reference, once
        cache = tr.encode_reference(base.ref_latents, base.ref_motion, base.ref_context) if use_reference_cache else None

        C, h, w = ref_latents.shape[1], ref_latents.shape[3], ref_latents.shape[4]
        shift = None  # one head-motion plan for all chunks, moving the condition prior (inference/motion_planner.py)
        if measured is not None and spec.motion_shift and tr.config.condition_prior_var:
            track = planner.track_from_measured(measured, min(ref.shape[1:3]), h)
            shift = planner.latent_shift(track[: max(spec.motion_context_frames, n_ref_video)],
                                         video_frames_for(n_latent_padded, td), td, n_latent_padded,
                                         generator).to(device)
        margin = tr.config.audio_window
        chunks_latents, chunks_motion = [], []
        prev_lat = prev_mot = None
        bar = (StepCallback(len(starts) * steps, progress) if callable(progress)
               else tqdm(total=len(starts) * steps, desc="avatarv generate", disable=not progress, unit="step"))

        # 4.-5. chunks
        for k, s in enumerate(starts):
            lat = torch.randn((1, C, T_c, h, w), generator=generator, device="cpu").to(device, dtype)
            mot = torch.randn((1, T_c, tr.config.motion_dim), generator=generator, device="cpu").to(device, dtype)
            n_bridge = 0 if k == 0 else b
            if n_bridge:
                lat[:, :, :b], mot[:, :b] = prev_lat[:, :, -b:], prev_mot[:, -b:]
            elif spec.first_frame_bridge:  # the reference's first frame opens the video, clean
                n_bridge = 1
                lat[:, :, :1] = ref_latents[:, :, :1]
                if ref_motion is not None:
                    mot[:, :1] = as_latent_rate(base.ref_motion, n_ref_latent, td)[:, :1]
            lead = min(td * s, td - 1 + margin)
            a_chunk = feats[:, td * s - lead : td * (s + T_c - 1) + margin + 1]
            window = dataclasses.replace(base, prior_mean=prior_mean(
                tr, spec, base.cond_frame, None if shift is None else shift[:, s : s + T_c]))
            lat, mot = self.sample_window(lat, mot, window, audio=a_chunk, audio_lead=lead, n_bridge=n_bridge,
                                          reference_cache=cache, use_reference_cache=use_reference_cache, steps=steps,
                                          guidance=guidance, progress_bar=bar)
            chunks_latents.append(lat if k == 0 else lat[:, :, b:])
            chunks_motion.append(mot if k == 0 else mot[:, b:])
            prev_lat, prev_mot = lat, mot
            a = cfg.anchor_latent_frames
            if k == 0 and a > 0 and len(starts) > 1 and spec.reference:  # global appearance anchor for later chunks
                anchor = (lat[:, :, :a], mot[:, :a] if spec.motion else None)
                if use_reference_cache:
                    cache = tr.extend_reference(cache, *anchor)
                base = dataclasses.replace(base, anchors=[*base.anchors, anchor])
        bar.close()

        # 6. decode once, trim to the audio's length
        latents = torch.cat(chunks_latents, dim=2)[:, :, :n_latent]
        motion = torch.cat(chunks_motion, dim=1)[:, :n_latent]
        frames = decode_frames(vae, latents)[0, :n_video].numpy()
        motion_video = expand_to_video_rate(tr.denormalize_motion(motion.float()), td, n_video)[0].cpu().numpy()

        # 7. the refiner (if any): ×factor super-resolution, the person's reference frames in its attention
        if refine and getattr(self, "refiner", None) is not None:
            frames = self.refiner.refine(frames, ref, path="base model output")

        # 8. back into the source's frames (played forwards and backwards under the speech)
        face_frames = frames
        if aligned is not None:
            idx = loop_indices(len(source_frames), n_video)
            frames = paste_back(face_frames, source_frames[idx],
                                rescale(aligned.transforms[idx], aligned.side, face_frames.shape[1]))
            notes.insert(0, aligned.note)
        ref_face = square_resize(ref[:1], face_frames.shape[1])[0, :, 0].permute(1, 2, 0)
        ref_face = ((ref_face + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).numpy()
        return AvatarVPipelineOutput(frames=frames, motion=motion_video, latents=latents, fps=cfg.fps, audio=audio,
                                     sample_rate=sample_rate, face_frames=face_frames, reference_face=ref_face,
                                     note="; ".join(n for n in notes if n))


def pipeline_from_config(cfg, vae, transformer, audio_encoder, conditions: ConditionSpec | dict | None = None,
                         steps: int | None = None) -> AvatarVPipeline:
    """Assemble the pipeline from trained parts, params.yaml's `sampling` knobs (`steps` overrides the step count:
    a distilled student's) and the conditions the transformer was trained with (what every stage saves)."""
    from ..diffusion.scheduler import make_scheduler

    s = cfg.sampling
    conditions = conditions.to_dict() if isinstance(conditions, ConditionSpec) else conditions
    return AvatarVPipeline(vae=vae, transformer=transformer, audio_encoder=audio_encoder,
                           scheduler=make_scheduler(s.flow_shift), fps=cfg.corpus.fps,
                           chunk_latent_frames=s.chunk_latent_frames, bridge_latent_frames=s.bridge_latent_frames,
                           anchor_latent_frames=s.anchor_latent_frames,
                           reference_latent_frames=s.reference_latent_frames, steps=steps or s.steps, cfg_audio=s.cfg_audio,
                           cfg_reference=s.cfg_reference, conditions=conditions)


def is_saved_pipeline(path) -> bool:
    return (Path(path) / "model_index.json").exists()


def load_pipeline(path) -> AvatarVPipeline:
    """A pipeline saved by a training stage (runs/<stage>/final) or by `save_pretrained`, in eval mode."""
    from ..errors import AvatarVError, InputError

    path = Path(path)
    if not is_saved_pipeline(path):
        raise AvatarVError(f"{path}: no saved pipeline (model_index.json); train one with `avatarv train --stage sft`")
    try:
        saved_conditions(path)
    except (json.JSONDecodeError, UnicodeDecodeError, ValueError, AttributeError) as e:
        raise InputError(path / "model_index.json", f"unreadable pipeline index ({type(e).__name__}: {str(e)[:80]})") from None
    from diffusers.utils import logging as diffusers_logging

    diffusers_logging.disable_progress_bar()  # component loading takes < 1 s; generation has its own bar
    try:
        return AvatarVPipeline.from_pretrained(str(path))
    finally:
        diffusers_logging.enable_progress_bar()
