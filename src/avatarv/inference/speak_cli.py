"""`avatarv speak`: text → speech in the voice of a ~10 s reference (a wav, or a video's own audio), as a wav.

Every input is checked before any weights load, each failure one line naming the file and the problem (text with
characters that cannot be spoken, a reference that is too short, silent or holds several speakers, no trained
voice model, no consent recorded for the voice reference). The wav is written atomically.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import InputError

DEFAULT_VOICE_CHECKPOINT = "voice/final"  # under runs/


def add_voice_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--lang", default="en-us", help="language of --text: en-us | en-gb | de | fr | es (default en-us)")
    p.add_argument("--voice-checkpoint", default=None, help="trained voice cloner (default: runs/voice/final)")
    p.add_argument("--voice-seed", type=int, default=0, help="sampling seed of the voice LM")
    p.add_argument("--temperature", type=float, default=None, help="voice LM sampling temperature (0 = greedy)")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--voice-ref", required=True, help="reference speech: .wav, or a video (.mp4) with its own audio")
    p.add_argument("--text", required=True, help="what to say")
    p.add_argument("--out", required=True, help="output .wav (written atomically)")
    add_voice_arguments(p)
    from .consent import add_consent_flag

    add_consent_flag(p)


def synthesize_speech(args: argparse.Namespace, reference_path: str, cfg):
    """Checks, then the cloned speech (float32, rate) for `args.text` in the voice of `reference_path`."""
    from ..paths import RUNS
    from .voice import VoiceCloner, normalize_text, phonemize, read_reference

    v = cfg.voice
    text = normalize_text(args.text)
    if args.lang not in ("en-us", "en-gb", "de", "fr", "es"):
        raise InputError("--lang", f"unknown language {args.lang!r} (known: en-us, en-gb, de, fr, es)")
    ref = read_reference(reference_path, v.min_reference_s, v.max_reference_s, v.multi_speaker_similarity, v.sample_rate)
    phonemes = phonemize(text, args.lang)
    cloner = VoiceCloner.load(Path(args.voice_checkpoint) if args.voice_checkpoint else RUNS / DEFAULT_VOICE_CHECKPOINT)
    cloner.phoneme_ids(phonemes)  # unknown phonemes refused before generating
    temperature = v.temperature if args.temperature is None else args.temperature
    audio = cloner.clone(ref.audio, phonemes, temperature=temperature, top_k=v.top_k, seed=args.voice_seed)
    if audio.size == 0:
        raise InputError(reference_path, "the voice model produced no speech for this text")
    return audio, cloner.sample_rate


def main(args: argparse.Namespace) -> int:
    import torch

    from ..config import load_config
    from ..media.audio import write_wav

    cfg = load_config(args.profile)
    out = Path(args.out)
    if out.suffix.lower() != ".wav":
        raise InputError(out, "output must be a .wav file")
    from .consent import require_consent

    require_consent(args.voice_ref, args.i_have_consent)
    torch.set_num_threads(1)
    audio, sr = synthesize_speech(args, args.voice_ref, cfg)
    write_wav(out, audio, sr)
    print(f"{out}: {len(audio) / sr:.2f} s of speech at {sr} Hz in the voice of {args.voice_ref}")
    return 0
