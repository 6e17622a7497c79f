"""The `avatarv` console script: a thin dispatcher onto one command module per concern.

Each command module exposes `add_arguments(parser)` and `main(args) -> int`; only the chosen command's module is
imported, so `avatarv study serve` does not pay for torch. Project errors (bad input, bad config) are printed as
one line naming the file or key, with exit code 2; nothing else is caught.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from .config import PROFILES
from .errors import AvatarVError

COMMANDS: dict[str, tuple[str, str]] = {
    "synth": ("avatarv.data.synth_cli", "generate the embedded synthetic talking-head corpus"),
    "ingest": ("avatarv.data.ingest", "normalise a folder of real mp4s into the corpus layout"),
    "curate": ("avatarv.curate.cli", "run the curation cascade and identity graph on a corpus"),
    "train": ("avatarv.train.cli", "train a curriculum stage (vae, t2v, a2v, sft, lora)"),
    "consent": ("avatarv.inference.consent", "record who agreed that a reference of them may be animated"),
    "adapt": ("avatarv.train.adapt_cli", "fit a per-person LoRA adapter on a reference clip"),
    "verify": ("avatarv.inference.verify", "check an mp4 for the avatarv watermark and provenance tags"),
    "generate": ("avatarv.inference.cli", "generate a talking video from a reference and speech audio (or text)"),
    "speak": ("avatarv.inference.speak_cli", "text to speech in the voice of a ~10 s reference (voice cloning)"),
    "demo": ("avatarv.demo.cli", "serve the local demo web app (upload, progress, watch, download)"),
    "eval": ("avatarv.eval.cli", "score generated videos against references"),
    "study": ("avatarv.study.cli", "human study / Turing test: serve, export, analyze"),
}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="avatarv", description="Avatar V: open, reproducible talking avatars.")
    ap.add_argument("--profile", default=None, help="params.yaml profile: tiny | small | paper")
    sub = ap.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module, help_) in COMMANDS.items():
        p = sub.add_parser(name, help=help_)
        if name == command:
            importlib.import_module(module).add_arguments(p)
    return ap


def _profile_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--profile", default=None)
    return p


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = next((a for a in argv if a in COMMANDS), None)
    profile, _ = _profile_parser().parse_known_args(argv)
    if profile.profile is not None and profile.profile not in PROFILES:
        print(f"avatarv {command}: error: unknown profile {profile.profile!r} (known: {', '.join(PROFILES)})", file=sys.stderr)
        return 2
    try:
        args = build_parser(command).parse_args(argv)
    except ModuleNotFoundError as e:
        print(f"avatarv {command}: error: this command is not available ({e})", file=sys.stderr)
        return 2
    try:
        return int(importlib.import_module(COMMANDS[args.command][0]).main(args) or 0)
    except AvatarVError as e:
        print(f"avatarv {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
