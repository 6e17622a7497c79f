"""`avatarv generate`: reference video/photo + speech → talking mp4 with the audio muxed (seed: the product).

By default (`--crop face`) the face is found in the reference, carried onto the corpus's face framing, generated
there and pasted back into the reference's own frames at their size and rate (faces/align.py), so landscape
footage and wide photos keep their framing; `--crop full` feeds the whole frame as a centre square (footage already
framed like the corpus). `--adapt` first fits (or reuses) a per-person LoRA on the reference clip (train/adapt.py);
`--lora DIR` uses a saved one. Every output gets a self-check (face present? same person as the reference? judged by
dlib, which no training loss uses), printed as one line and written with the provenance into `OUT.json`.

Every input is checked before any weights load, each failure one line naming the file and the problem:
unreadable / missing file, no audio stream, silent audio, no face in the reference, no trained checkpoint, no
consent recorded for the reference (inference/consent.py; `--i-have-consent` asserts it instead).
The mp4 is written atomically (temp file, then rename), so a failure never leaves a half-written output.
References and speech of any container, frame rate, rotation or sample rate are read through the media normaliser;
the pipeline generates at its working rate and the mp4 is written at `--fps` (default: the reference video's own
rate, e.g. 30000/1001 for a 29.97 fps clip; 25 for a photo), so the output can be pasted back into the source.
When stage 08 has trained a refiner (runs/refiner/model) the frames are upscaled by it (tiny: 64 → 256 px);
`--no-refine` keeps the base model's size.
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
    p.add_argument("--crop", choices=("face", "full"), default="face",
                   help="face: generate the aligned face and paste it back into the reference's frames at their size "
                        "(default); full: the whole frame, centre-cropped to a square (output at the model's size, "
                        "64 px at the tiny profile, 256 px at small)")
    p.add_argument("--adapt", action="store_true",
                   help="fit (or reuse, cached by the clip's hash) a per-person LoRA on the reference clip first")
    p.add_argument("--lora", default=None, help="a saved adapter folder (peft format, from `avatarv adapt`)")
    p.add_argument("--refiner", default=None,
                   help="a trained super-resolution refiner (stage 08). Default: runs/refiner/model when it exists. "
                        "It upscales the generated frames by its factor before they are pasted back: with --crop full "
                        "the output is the model's size times the factor (256x256 at tiny, 1080x1920 = 1080p at the "
                        "paper profile); with --crop face the sharper face is pasted into the reference's frames")
    p.add_argument("--no-refine", action="store_true",
                   help="skip the refiner: the model's own frames (64x64 at the tiny profile with --crop full)")
    p.add_argument("--device", default=None, help="cpu | cuda (default: params.yaml device)")
    p.add_argument("--no-progress", action="store_true")
    from .consent import add_consent_flag
    from .speak_cli import add_voice_arguments

    add_voice_arguments(p)
    add_consent_flag(p)


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


def resolve_refiner(arg: str | None) -> Path | None:
    """--refiner DIR (must hold a saved refiner), else runs/refiner/model when stage 08 has run, else None."""
    from ..paths import RUNS

    if arg:
        if not (Path(arg) / "config.json").exists():
            raise InputError(arg, "no saved refiner here (config.json missing); train one with stage 08_refiner")
        return Path(arg)
    default = RUNS / "refiner" / "model"
    return default if (default / "config.json").exists() else None


def check_refiner(ckpt: Path, refiner_dir: Path | None, explicit: bool) -> Path | None:
    """The refiner to use, checked from the saved configs before any weights load: its input size must be the base
    model's frame size. A mismatch is a one-line error for --refiner; the default refiner is skipped with a note."""
    import json

    if refiner_dir is None:
        return None
    r = json.loads((refiner_dir / "config.json").read_text())
    base = int(json.loads((ckpt / "transformer" / "config.json").read_text()).get("sample_size", 0))
    if [int(s) for s in r.get("in_size", [])] != [base, base]:
        h, w = r.get("in_size", ["?", "?"])
        problem = f"the refiner upsamples {w}x{h} frames but the base model makes {base}x{base}"
        if explicit:
            raise InputError(refiner_dir, problem)
        print(f"note: {refiner_dir}: {problem}; output not refined")
        return None
    return refiner_dir


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
    from .consent import require_consent

    consent = {"reference": require_consent(args.ref, args.i_have_consent)}
    if args.text is not None and args.voice_ref:
        consent["voice_reference"] = require_consent(args.voice_ref, args.i_have_consent)
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
    refiner_dir = None if getattr(args, "no_refine", False) else resolve_refiner(getattr(args, "refiner", None))
    refiner_dir = check_refiner(ckpt, refiner_dir, explicit=bool(getattr(args, "refiner", None)))

    # 2. model
    from .pipeline import load_pipeline

    device = args.device or cfg.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cpu":  # many small ops: extra threads only add sync cost (measured 50 ms vs 2.3 s per step on a busy 2-core box)
        torch.set_num_threads(1)
    def build_pipe():
        pipe = load_pipeline(ckpt)
        if refiner_dir is not None:
            from ..models.refiner import load_refiner

            pipe.register_modules(refiner=load_refiner(refiner_dir))
        pipe = pipe.to(device)
        pipe.set_progress_bar_config(disable=True)
        return pipe

    pipe = build_pipe()
    adapter = Path(args.lora) if args.lora else None
    if args.adapt and adapter is None:
        from ..train.adapt import adapt

        fitted = adapt(cfg, pipe, ckpt, Path(args.ref), progress=not args.no_progress)
        adapter = fitted.adapter_dir
        print(f"{adapter}: adapter {'reused' if fitted.cached else 'fitted'} ({fitted.metrics['steps']} steps)")
        pipe = build_pipe()  # the fit trained this pipeline's transformer in place; start clean, then load
    if adapter is not None:
        from ..train.adapt import load_adapter

        load_adapter(pipe, adapter)

    # 3. generate, 4. write atomically with the audio muxed
    guidance = Guidance(audio=args.cfg_audio if args.cfg_audio is not None else pipe.config.cfg_audio,
                        reference=args.cfg_reference if args.cfg_reference is not None else pipe.config.cfg_reference)
    generator = torch.Generator().manual_seed(cfg.seed if args.seed is None else args.seed)
    result = pipe(frames, audio, sr, motion_reference=style_frames, num_inference_steps=args.steps, guidance=guidance,
                  generator=generator, progress=not args.no_progress, crop=args.crop, source_name=str(args.ref),
                  refine=not getattr(args, "no_refine", False))
    if result.note:
        print(f"{args.ref}: {result.note}")
    from .sidecar import describe, mp4_tags, write_sidecar

    info = describe(checkpoint=ckpt, reference=Path(args.ref), audio=Path(args.audio) if args.audio else None,
                    text=args.text, adapter=adapter, crop=args.crop, fps=out_rate, self_check={}, note=result.note)
    result.save(out, fps=out_rate, metadata=mp4_tags(info))
    n = probe(out).n_frames
    h, w = result.frames.shape[1:3]
    refined = "refined" if getattr(pipe, "refiner", None) is not None and not getattr(args, "no_refine", False) else "not refined"
    print(f"{out}: {w}x{h} ({refined}), {n} frames at {out_rate} fps ({n / float(out_rate):.2f} s; generated "
          f"{len(result.frames)} at {pipe.config.fps} fps), audio {len(audio) / sr:.2f} s")

    # 5. self-check and provenance sidecar
    from .self_check import self_check

    check = self_check(result.frames, frames[0])
    print(check.summary())
    write_sidecar(out, {**info, "self_check": check.to_dict(), "watermark": "avatarv (media/watermark.py)",
                        "consent": consent})
    return 0
