"""`avatarv generate`: reference video/photo + speech → talking mp4 with the audio muxed (seed: the product).

Every input is checked before any weights load, each failure one line naming the file and the problem:
unreadable / missing file, no audio stream, silent audio, no face in the reference, no trained checkpoint.
The mp4 is written atomically (temp file, then rename), so a failure never leaves a half-written output.
References and speech of any container, frame rate, rotation or sample rate are read through the media normaliser;
the pipeline generates at its working rate and the mp4 is written at `--fps` (default: the reference video's own
rate, e.g. 30000/1001 for a 29.97 fps clip; 25 for a photo), so the output can be pasted back into the source.
With `--text` instead of `--audio`, the speech is first synthesised in the person's own voice, cloned from the
reference video's audio (or `--voice-ref`) by the stage-09 voice model (inference/voice.py).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from ..errors import AvatarVError, InputError
from ..media import as_rate, probe
from .inputs import read_reference, read_speech

DEFAULT_CHECKPOINTS = ("sft", "a2v")  # runs/<stage>/final, best first


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--ref", required=True, help="reference video (.mp4) or photo (.png/.jpg) of the person")
    speech = p.add_mutually_exclusive_group(required=True)
    speech.add_argument("--audio", help="speech audio (.wav, or any file with an audio stream)")
    speech.add_argument("--text", help="what the person says: spoken in their own voice, cloned from the reference "
                                       "video's audio (or --voice-ref) by the voice model (stage 09_voice)")
    p.add_argument("--voice-ref", default=None, help="with --text: take the voice from this file instead of --ref")
    p.add_argument("--out", required=True, help="output .mp4 (written atomically)")
    p.add_argument("--checkpoint", default=None,
                   help="a saved pipeline (every training stage saves one as runs/<stage>/final). "
                        "Default: runs/sft/final, else runs/a2v/final")
    p.add_argument("--steps", type=int, default=None, help="denoising steps (default: the pipeline's, params.yaml sampling.steps when trained)")
    p.add_argument("--seed", type=int, default=None, help="noise seed (default: params.yaml seed)")
    p.add_argument("--cfg-audio", type=float, default=None, help="audio guidance weight (1 = off)")
    p.add_argument("--cfg-reference", type=float, default=None, help="reference guidance weight (1 = off)")
    p.add_argument("--motion-ref", default=None,
                   help="take the motion style (head sway, blinks, expression) from this other video instead of --ref")
    p.add_argument("--fps", default=None,
                   help="output frame rate: 25, 29.97, 30000/1001 ... "
                        "(default: the reference video's own rate; 25 for a photo)")
    p.add_argument("--device", default=None, help="cpu | cuda (default: params.yaml device)")
    p.add_argument("--no-progress", action="store_true")
    from .speak_cli import add_voice_arguments

    add_voice_arguments(p)


def check_face(frames: np.ndarray, path: str | Path) -> None:
    """At least one face in the reference (first / middle / last frame; MediaPipe, then dlib HOG)."""
    from ..faces import detect_faces

    picks = sorted({0, len(frames) // 2, len(frames) - 1})
    for i in picks:
        for backend in ("mediapipe", "dlib"):
            if detect_faces(frames[i], backend=backend):
                return
    raise InputError(path, "no face found in the reference")


def resolve_checkpoint(arg: str | None) -> Path:
    from ..paths import RUNS

    candidates = [Path(arg)] if arg else [RUNS / stage / "final" for stage in DEFAULT_CHECKPOINTS]
    from .pipeline import is_saved_pipeline

    for c in candidates:
        if is_saved_pipeline(c):
            return c
    where = candidates[0]
    raise AvatarVError(f"{where}: no trained checkpoint (no saved pipeline there); train one with "
                       f"`avatarv train --stage sft` or pass --checkpoint DIR")


def main(args: argparse.Namespace) -> int:
    import torch

    from ..config import load_config
    from ..diffusion.guidance import Guidance

    cfg = load_config(args.profile)
    out = Path(args.out)
    if out.suffix.lower() != ".mp4":
        raise InputError(out, "output must be an .mp4 file")
    # 1. inputs, before any weights
    reference = read_reference(args.ref)
    frames = reference.frames
    try:
        out_rate = as_rate(args.fps) if args.fps is not None else reference.source_rate
    except ValueError as e:
        raise InputError("--fps", str(e)) from None
    if args.text is not None:
        if reference.frames.shape[0] == 1 and args.voice_ref is None:
            raise InputError(args.ref, "a photo has no voice: pass --voice-ref with ~10 s of the person's speech")
        check_face(frames, args.ref)
        ckpt = resolve_checkpoint(args.checkpoint)  # before the voice model runs
        from .speak_cli import synthesize_speech

        audio, sr = synthesize_speech(args, args.voice_ref or args.ref, cfg)
    else:
        audio, sr = read_speech(args.audio)
        check_face(frames, args.ref)
    style_frames = frames
    if args.motion_ref:
        style_frames = read_reference(args.motion_ref).frames
        check_face(style_frames, args.motion_ref)
    ckpt = resolve_checkpoint(args.checkpoint)

    # 2. model
    from .pipeline import load_pipeline

    device = args.device or cfg.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cpu":  # many small ops: extra threads only add sync cost (measured 50 ms vs 2.3 s per step on a busy 2-core box)
        torch.set_num_threads(1)
    pipe = load_pipeline(ckpt).to(device)
    pipe.set_progress_bar_config(disable=True)

    # 3. generate, 4. write atomically with the audio muxed
    guidance = Guidance(audio=args.cfg_audio if args.cfg_audio is not None else pipe.config.cfg_audio,
                        reference=args.cfg_reference if args.cfg_reference is not None else pipe.config.cfg_reference)
    generator = torch.Generator().manual_seed(cfg.seed if args.seed is None else args.seed)
    result = pipe(frames, audio, sr, motion_reference=style_frames, num_inference_steps=args.steps, guidance=guidance,
                  generator=generator, progress=not args.no_progress)
    result.save(out, fps=out_rate)
    n = probe(out).n_frames
    print(f"{out}: {n} frames at {out_rate} fps ({n / float(out_rate):.2f} s; generated {len(result.frames)} at "
          f"{pipe.config.fps} fps), audio {len(audio) / sr:.2f} s")
    return 0
