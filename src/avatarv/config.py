"""Typed configuration: params.yaml + a profile → nested dataclasses. Nothing else in the project reads YAML.

params.yaml holds the tiny-profile values at the top level and, under `profiles:`, the overrides for `small`
and `paper` (and an empty `tiny`, so that every DVC stage can track `profiles.${profile}`: an edit of the selected
profile's overrides makes its stages stale). `load_config(profile)` deep-merges the override onto the base, then
builds the dataclasses below, refusing unknown keys, missing keys and values of the wrong type with a one-line
`ConfigError` naming the key.
Section dataclasses live here so that one file shows every knob's type; each stage reads only its section.
"""

from __future__ import annotations

import copy
import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .errors import ConfigError
from .paths import PARAMS

PROFILES = ("tiny", "small", "paper")


# --------------------------------------------------------------------------------------------- sections
@dataclass(kw_only=True)
class CorpusConfig:
    """Embedded synthetic talking-head corpus (issue 4)."""

    identities: int  # distinct people (photo-based + procedural)
    scenes: int  # scenes per identity (background, light, framing, clothing)
    clips_per_scene: int
    seconds: float  # nominal clip duration
    size: int  # frame side in pixels (square)
    fps: int = 25
    sample_rate: int = 16000
    distractor_fraction: float = 0.2
    languages: list[str] = field(default_factory=lambda: ["en-us", "en-gb", "de", "fr", "es"])
    workers: int = 2
    source: str = "synth"  # "synth" = generate the embedded corpus; else a folder of real videos to ingest


@dataclass(kw_only=True)
class CurateConfig:
    """Curation cascade thresholds (issue 5); every filter's threshold lives here."""

    engine: str = "local"  # local | ray
    workers: int = 2  # processes (local engine) / CPUs (ray engine)
    short_circuit: bool = False  # stop a clip's cascade at its first failure (faster) or measure everything
    # container / stream validation
    min_duration_s: float = 1.0
    max_duration_s: float = 600.0
    max_side_px: int = 4096
    min_side_px: int = 48
    min_decoded_frac: float = 0.95  # decoded frames / frames the container declares (truncation)
    max_av_duration_gap_s: float = 0.5  # |audio duration - video duration|
    # scene cuts (PySceneDetect ContentDetector score per frame)
    scene_cut_threshold: float = 27.0
    min_scene_len_frames: int = 5
    split_scene_cuts: bool = False  # write each shot of a cut clip as its own clip (DIR2/segments/) and curate it
    # faces: detection + tracking on every `face_stride`-th frame
    face_detector: str = "mediapipe"  # mediapipe | dlib
    face_stride: int = 4
    face_confidence: float = 0.5
    min_face_frac: float = 0.9  # fraction of sampled frames with at least one face
    max_faces: int = 1
    max_multi_face_frac: float = 0.2  # fraction of sampled frames allowed to show more than max_faces faces
    min_face_px: float = 24.0  # face box side (sqrt area)
    max_abs_yaw: float = 0.7  # |nose offset| / half face width (0 frontal, 1 profile)
    # audio-visual sync: landmark mouth opening vs audio envelope (or the eval sync expert when present)
    sync_backend: str = "auto"  # auto (expert when sync_expert_dir holds one) | landmarks | expert
    sync_expert_dir: str = ""  # a trained avatarv.models.sync_expert model folder (relative to the project root)
    max_av_offset_frames: int = 1
    sync_search_frames: int = 8
    min_sync_confidence: float = 0.0
    # speech activity (silero-vad)
    min_speech_frac: float = 0.3
    vad_threshold: float = 0.5
    max_spectral_flatness: float = 0.5  # white-ish noise has flatness near 1, speech well below
    # sharpness / quality on the face crop
    quality_metric: str = "laplacian"  # laplacian | piqe
    min_sharpness: float = 20.0  # Laplacian variance of the 96x96 grey face crop
    max_piqe: float = 70.0
    min_detail_ratio: float = 0.0  # high/mid frequency energy ratio of the face crop (upscaled low-res input)
    # identity graph
    embedding_backend: str = "dlib"  # dlib | arcface (needs arcface_onnx)
    arcface_onnx: str = ""
    embed_frames: int = 5
    identity_threshold: float = 0.6  # cosine similarity for an edge
    strong_edge_threshold: float = 0.95  # edges at least this similar need no triangle support
    knn_k: int = 10  # edges must be mutual k-nearest neighbours
    min_triangle_support: int = 1
    community_min_similarity: float = 0.5  # diameter check: every pair inside a community at least this similar
    voice_backend: str = "resemblyzer"  # resemblyzer | none: a voice match is also required for an identity edge
    voice_threshold: float = 0.75  # cosine similarity of resemblyzer speaker embeddings
    identity_consistency_threshold: float = 0.5  # share of a claimed identity's clips a clip's community must hold
    # pairs (reference clip -> target clip, same identity, other scene)
    min_pair_seconds: float = 1.0
    max_background_similarity: float = 0.8
    params: dict[str, Any] = field(default_factory=dict)  # per-filter extras


@dataclass(kw_only=True)
class VAEConfig:
    """Causal 3-D video autoencoder trained from scratch in stage 02_vae (issue 6)."""

    latent_channels: int = 8
    base_channels: int = 32
    spatial_downsample: int = 4
    temporal_downsample: int = 4
    steps: int = 400
    batch_size: int = 4
    lr: float = 2e-4
    frames: int = 9  # video frames per training window (1 + 4k)
    kl_weight: float = 1e-6
    size: int = 64  # frame side (px) the VAE trains and evaluates at (the DiT stages' size)
    face_weight: float = 2.0  # extra L1 weight inside the manifest face box (the part viewers look at)
    warmup_steps: int = 20
    checkpoint_every: int = 100  # accelerate save_state period; a killed run resumes from the newest
    max_clips: int = 0  # clean training clips loaded into memory (0 = all)
    eval_windows: int = 16  # held-out windows scored for PSNR/SSIM (overall and face region)
    norm: str = "rms"  # rms (per-pixel, keeps colour: +0.8 dB held-out at tiny) | group
    color_aug: bool = False  # random RGB permutation of windows (tried at tiny: 24.1 vs 24.9 dB held-out, off)
    time_limit_s: float = 0.0  # stop training after this many seconds (0 = run every step; a fixed GPU budget)


@dataclass(kw_only=True)
class DiTConfig:
    """The Avatar V DiT's architecture (issue 6): what `models/dit.py transformer_from_config` builds."""

    hidden: int = 128  # token width
    layers: int = 4  # transformer blocks
    heads: int = 4  # attention heads per block
    patch: list[int] = field(default_factory=lambda: [1, 2, 2])  # (t, h, w) latent patch; only 1×p×p is supported
    text_dim: int = 384  # width of the text-encoder features the text cross-attention reads
    audio_dim: int = 128  # width of the audio encoder's features (models/audio_encoder.py)
    motion_dim: int = 16  # width of the per-frame motion vector of the motion stream
    audio_window: int = 2  # audio x-attn: each latent frame sees its own video frames ± this many video frames
    mlp_ratio: float = 4.0  # feed-forward width / hidden
    # a clean start frame concatenated channel-wise to every generated frame (models/dit.py: frame condition)
    frame_condition: bool = False
    reference_time_stride: int = 256  # RoPE time offset between reference segments (reference k at -(k+1)·stride)


@dataclass(kw_only=True)
class SamplingConfig:
    """How the generator samples (issue 6): scheduler, guidance and the chunked long-video loop (inference/pipeline.py)."""

    steps: int = 12  # Euler sampling steps
    flow_shift: float = 1.0  # timestep shift for training sampling and the scheduler (>1 = more time at high noise)
    cfg_audio: float = 2.0  # classifier-free guidance scale on the audio condition
    cfg_reference: float = 1.5  # classifier-free guidance scale on the reference condition
    chunk_latent_frames: int = 4  # latent frames generated per chunk of a long video
    bridge_latent_frames: int = 1  # last latent frames of a chunk fed clean to the next chunk (continuation)
    anchor_latent_frames: int = 1  # first latent frames of chunk 0 appended to the cached reference (global anchor)
    reference_latent_frames: int = 2  # latent frames of the reference clip encoded into the cache


@dataclass(kw_only=True)
class ConditionsConfig:
    """How personality SFT (stage 3, train/sft.py) conditions the generator on the start frame and the reference."""

    # predict the residual over the Gaussian-prior velocity around the start frame (models/dit.py prior_velocity),
    # with its spread s² measured on the training windows (train/stage.py ensure_condition_prior)
    condition_prior: bool = False
    # video frames of the reference clip's motion history fed to the motion stream as a motion-only reference segment
    # (models/dit.py encode_reference); 0 = only the reference window's own motion tokens
    motion_context_frames: int = 0
    # the condition prior's mean moves with the motion stream's head shift (models/motion_plan.py): trained on the
    # target's own motion, sampled with a plan carrying the reference's motion spectrum
    motion_shift: bool = False


@dataclass(kw_only=True)
class StageTrainConfig:
    """One curriculum stage's optimisation knobs (issue 7)."""

    steps: int
    batch_size: int
    lr: float
    muon_lr: float = 0.02
    warmup_steps: int = 20
    grad_accum: int = 1
    ema_decay: float = 0.999
    checkpoint_every: int = 100
    mixed_precision: str = "no"  # no | bf16 (GPU)
    cond_dropout: float = 0.1
    frames: int = 9
    size: int = 64
    losses: dict[str, float] = field(default_factory=dict)  # aux loss name → weight (0 = off)
    # progressive curriculum (t2v): [{frames, size, frac}] in order; frac = share of the stage's steps
    phases: list[dict[str, Any]] = field(default_factory=list)
    bridge_prob: float = 0.0  # chance a batch keeps one clean leading latent frame (learns continuation)
    timestep_shift: float = 1.0  # flow-time shift towards noise (larger frames want > 1)
    eval_pairs: int = 16  # held-out cross-scene pairs generated for the stage's proof / grid
    variants: list[str] = field(default_factory=list)  # sft ablations to train (empty = all: full, flow_only, no_<term>)
    workers: int = 1  # sft ablations trained in parallel processes (1 thread each)
    # the window cache as memory-mapped files read by a DataLoader (data/window_store.py), not tensors in memory
    stream: bool = False
    loader_workers: int = 2  # DataLoader worker processes when streaming
    time_limit_s: float = 0.0  # stop training after this many seconds (0 = run every step; a fixed GPU budget)


@dataclass(kw_only=True)
class DistillConfig:
    """Stage 4, distillation (train/distill.py): CFG distillation, then DMD into a few-step student."""

    student_steps: int = 2  # the student's sampling steps (its pipeline's default)
    batch_size: int = 4
    lr: float = 1e-4  # student (and CFG phase)
    fake_lr: float = 2e-4  # fake score model
    cfg_steps: int = 150  # phase 1: the student matches the teacher's guided velocity at sampled weights
    cfg_audio_range: list[float] = field(default_factory=lambda: [1.0, 3.0])  # guidance weights sampled in phase 1
    cfg_reference_range: list[float] = field(default_factory=lambda: [1.0, 2.0])
    ode_pairs: int = 32  # teacher ODE samples (noise → clean) for the regression warm start
    warm_steps: int = 50  # phase 2a: regression of the student's few-step samples onto the teacher's
    dmd_steps: int = 150  # phase 2b: distribution matching (student updates)
    fake_updates: int = 2  # fake-score updates per student update (two time-scale rule)
    regression_weight: float = 0.25  # the regression term kept beside DMD (DMD's L_reg)
    checkpoint_every: int = 50
    mixed_precision: str = "no"
    curve_steps: list[int] = field(default_factory=lambda: [1, 2, 4, 8])  # student steps vs quality
    eval_pairs: int = 8  # held-out cross-scene pairs for the curve


@dataclass(kw_only=True)
class RefinerConfig:
    """Stage 08, the reference-aware super-resolution refiner (models/refiner.py, train/refiner.py)."""

    factor: int = 4  # output side = input side × factor (tiny 64 → 256; paper 270×480 → 1080×1920)
    in_size: list[int] = field(default_factory=lambda: [64, 64])  # (H, W) of the base model's frames it refines
    patch: int = 4  # low-res pixels per token side; each token paints a (patch·factor)² output patch
    hidden: int = 64
    layers: int = 2
    heads: int = 4
    mlp_ratio: float = 2.0
    window: int = 1  # local temporal attention: each frame sees frames t-window..t+window (0 = every frame)
    reference_frames: int = 1  # high-res reference frames whose tokens are cached (Sparse Reference Attention)
    reference_dropout: float = 0.1  # training: share of samples that see no reference (robust to a bad one)
    render_frames: int = 16  # frames per clip re-rendered at the output size (one clip per identity and scene)
    frames: int = 4  # frames per training sample
    steps: int = 150
    batch_size: int = 2
    lr: float = 0.002
    warmup_steps: int = 10
    checkpoint_every: int = 100
    face_weight: float = 2.0  # extra L1 weight inside the face box
    blur_sigma: list[float] = field(default_factory=lambda: [0.0, 0.8])  # training degradation range (low-res px)
    noise_std: list[float] = field(default_factory=lambda: [0.0, 0.02])  # additive noise range ([-1, 1] units)
    # trained beside the main model for the comparison table: no_reference, full_temporal (window 0)
    variants: list[str] = field(default_factory=lambda: ["no_reference", "full_temporal"])
    eval_frames: int = 12  # frames per held-out clip scored
    mixed_precision: str = "no"


@dataclass(kw_only=True)
class RLHFConfig:
    """Stage 5, RLHF (train/rlhf.py): GRPO on the reward models, DPO on preference pairs, both KL-regularised."""

    grpo_steps: int = 16  # policy updates (one group rollout each)
    prompts_per_step: int = 2  # conditions (reference + audio windows) per rollout
    group_size: int = 4  # samples per condition; advantages are relative within the group
    noise_level: float = 0.7  # η of the SDE sampler (exploration); 0 = the deterministic ODE
    clip_range: float = 0.001  # PPO ratio clip (per-element mean log-likelihoods: ratios stay near 1)
    kl_beta: float = 0.04  # weight of the KL to the reference model (GRPO)
    inner_epochs: int = 2  # optimizer passes over each rollout (the clipped ratio matters from the second)
    lr: float = 1e-4
    w_sync: float = 1.0  # reward weights (each term standardised within the group before the sum)
    w_identity: float = 1.0
    w_motion: float = 0.5
    w_quality: float = 0.5
    dpo_steps: int = 12
    dpo_batch: int = 4  # preference pairs per DPO step
    dpo_beta: float = 500.0  # Diffusion-DPO's β (the KL weight; errors are per-element means)
    dpo_lr: float = 5e-5
    dpo_conditions: int = 16  # training conditions sampled `group_size` times for reward-ranked pairs
    dpo_min_margin: float = 0.0  # |reward difference| at or below this is a tie: no pair
    sync_judge_steps: int = 150  # the reward's own sync expert (another split and architecture than eval's)
    sync_judge_channels: int = 24
    sync_judge_embed_dim: int = 64
    eval_pairs: int = 8  # held-out cross-scene pairs for before/after metrics
    checkpoint_every: int = 4
    mixed_precision: str = "no"


@dataclass(kw_only=True)
class VoiceConfig:
    """Stage 09, voice cloning (issue 24): a residual-VQ codec and a causal transformer LM over its tokens."""

    # training speech: every corpus voice speaks `utterances` sentences of its own language and as many in English
    utterances: int = 12
    sample_rate: int = 16000
    # codec (models/voice_codec.py): STFT frames (n_fft, hop) grouped `stride` to one token frame (25 Hz at 16 kHz)
    n_fft: int = 512
    hop: int = 160
    stride: int = 4
    codec_channels: int = 128
    latent_dim: int = 64
    codebooks: int = 4  # residual VQ depth
    codebook_size: int = 256
    codec_steps: int = 800
    codec_batch: int = 8
    codec_lr: float = 0.002
    codec_window_s: float = 2.0  # training crop
    griffin_lim_iters: int = 32
    # language model (models/voice_lm.py, a transformers GPT-2 trained from scratch)
    lm_hidden: int = 192
    lm_layers: int = 4
    lm_heads: int = 4
    lm_dropout: float = 0.0
    prompt_seconds: float = 4.0  # speaker prompt: the most voiced window of the reference, in codec frames
    max_audio_seconds: float = 8.0  # longest utterance the LM generates (and trains on)
    lm_steps: int = 800
    lm_batch: int = 8
    lm_lr: float = 0.001
    warmup_steps: int = 50
    checkpoint_every: int = 200
    temperature: float = 0.7  # sampling temperature (0 = greedy)
    top_k: int = 20
    # evaluation and input checks
    eval_texts: int = 3  # English sentences cloned per held-out voice
    min_reference_s: float = 3.0  # shorter voiced speech in a reference is refused
    max_reference_s: float = 30.0  # longer references are cut (the prompt only needs a few seconds)
    multi_speaker_similarity: float = 0.6  # reference windows less alike than this = several speakers


@dataclass(kw_only=True)
class TrainConfig:
    t2v: StageTrainConfig
    a2v: StageTrainConfig
    sft: StageTrainConfig
    lora: StageTrainConfig
    holdout_identities: int = 4


@dataclass(kw_only=True)
class EvalConfig:
    """Evaluation suite (issue 8): backends and weight paths (empty = offline fallback)."""

    syncnet_weights: str = ""
    s3fd_weights: str = ""
    arcface_onnx: str = ""
    qalign_weights: str = ""
    sync_expert_steps: int = 300
    sync_expert_batch: int = 32
    sync_expert_clips: int = 64  # training clips (clean, train split) read for the sync expert
    sync_expert_max_shift: int = 6  # training negatives: the same clip's audio shifted by ±1..this many frames
    max_offset_frames: int = 8  # offset search range when scoring
    benchmark_clips: int = 8  # cross-scene benchmark cases (held-out identities)
    benchmark_version: str = "cross_scene_v1"
    benchmark_seconds: float = 0.0  # driving audio per case cut to this many seconds (0 = whole target clip)
    validation_clips: int = 4  # held-out clips for the shifted-audio sync validation
    identity_frames: int = 8  # frames embedded per clip for face similarity
    quality_frames: int = 4  # frames scored per clip by PIQE/NIQE/BRISQUE
    chunk_seconds: float = 2.0  # drift chunk length (the generator's chunk, ~6.4 s in the seed)
    generate_steps: int = 0  # denoising steps for benchmark generation (0 = the checkpoint's default)


@dataclass(kw_only=True)
class RealFacesConfig:
    """Stage 13_real_faces (eval/real_faces.py): people framed as real footage, base vs per-person adapted model."""

    synthetic_cases: int = 2  # held-out synthetic identities
    real_cases: int = 2  # the corpus's real photo identities (trained on: no real face is left to hold out)
    reference_seconds: float = 4.0  # the reference clip a user uploads
    speech_seconds: float = 3.0  # the driving speech (another clip of the same person)
    adapt_steps: int = 30  # LoRA steps of `avatarv adapt` per person


@dataclass(kw_only=True)
class StudyConfig:
    """Human study / Turing test app (issue 9)."""

    host: str = "127.0.0.1"
    port: int = 8765
    annotators_per_case: int = 3
    bootstrap: int = 1000
    annotators: int = 6  # invite tokens made by `study create` / the notebook's simulated study
    turing_cases: int = 12  # real-vs-generated pairs in the exported bundle
    likert_cases: int = 8  # single videos rated on the six 5-point dimensions
    pairwise_cases: int = 8  # system-vs-system preference pairs
    simulated_accuracy: float = 0.778  # SIMULATED annotators' mean Turing accuracy (the seed's 77.8 %)


@dataclass(kw_only=True)
class TrackingConfig:
    tracking_uri: str = ""  # empty → sqlite:///<root>/mlflow.db
    experiment: str = "avatarv"


@dataclass(kw_only=True)
class Config:
    profile: str
    seed: int
    device: str  # auto | cpu | cuda
    corpus: CorpusConfig
    curate: CurateConfig
    vae: VAEConfig
    dit: DiTConfig
    sampling: SamplingConfig
    conditions: ConditionsConfig
    train: TrainConfig
    distill: DistillConfig
    voice: VoiceConfig
    rlhf: RLHFConfig
    eval: EvalConfig
    real_faces: RealFacesConfig
    study: StudyConfig
    tracking: TrackingConfig
    refiner: RefinerConfig = field(default_factory=RefinerConfig)


# --------------------------------------------------------------------------------------------- loading
def _deep_merge(base: dict, override: dict, where: str) -> dict:
    """Overlay a profile onto the base; unknown keys are caught later by the dataclass build."""
    out = copy.deepcopy(base)
    for k, v in (override or {}).items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _deep_merge(out[k], v, f"{where}{k}.")
        else:
            out[k] = v
    return out


def _check_type(value: Any, tp: Any, key: str) -> Any:
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(tp):
            try:
                return _check_type(value, arg, key)
            except ConfigError:
                continue
        raise ConfigError(f"params.yaml: {key} = {value!r} is not a {tp}")
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"params.yaml: {key} = {value!r} should be a list")
        (arg,) = typing.get_args(tp) or (Any,)
        return [_check_type(v, arg, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"params.yaml: {key} = {value!r} should be a mapping")
        return dict(value)
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, key)
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp is type(None):
        if value is None:
            return None
        raise ConfigError(f"params.yaml: {key} should be null")
    if not isinstance(value, tp) or (tp is int and isinstance(value, bool)):
        raise ConfigError(f"params.yaml: {key} = {value!r} should be of type {tp.__name__}")
    return value


def _build(cls: type, data: Any, prefix: str) -> Any:
    if not isinstance(data, dict):
        raise ConfigError(f"params.yaml: {prefix} should be a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(f"params.yaml: unknown key {prefix + '.' if prefix else ''}{unknown[0]}")
    kwargs = {}
    for name, f in fields.items():
        key = f"{prefix}.{name}" if prefix else name
        if name not in data:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise ConfigError(f"params.yaml: missing key {key}")
            continue
        kwargs[name] = _check_type(data[name], hints[name], key)
    return cls(**kwargs)


def load_raw(path: Path | str = PARAMS) -> dict:
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path}: params file not found")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML ({str(e).splitlines()[0]})") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    return raw


def load_config(profile: str | None = None, path: Path | str = PARAMS) -> Config:
    """Load params.yaml for `profile` (default: the file's `profile:` key)."""
    raw = load_raw(path)
    profiles = raw.pop("profiles", {}) or {}
    profile = profile or raw.get("profile", "tiny")
    if profile not in PROFILES:
        raise ConfigError(f"unknown profile {profile!r} (known: {', '.join(PROFILES)})")
    if not isinstance(profiles, dict) or any(not isinstance(v, dict | None) for v in profiles.values()):
        raise ConfigError("params.yaml: profiles should map each profile to a mapping of overrides")
    stray = sorted(set(profiles) - set(PROFILES))
    if stray:
        raise ConfigError(f"params.yaml: unknown profile profiles.{stray[0]} (known: {', '.join(PROFILES)})")
    merged = _deep_merge(raw, profiles.get(profile) or {}, f"{profile}.")
    merged["profile"] = profile
    return _build(Config, merged, "")


def to_flat_dict(obj: Any, prefix: str = "") -> dict[str, Any]:
    """Flatten a config (or section) into dotted keys, e.g. for MLflow params."""
    out: dict[str, Any] = {}
    items = dataclasses.asdict(obj).items() if dataclasses.is_dataclass(obj) else obj.items()
    for k, v in items:
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(to_flat_dict(v, key + "."))
        else:
            out[key] = v
    return out
