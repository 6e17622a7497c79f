"""`avatarv verify FILE.mp4`: is this an avatarv video? Reads the provenance tags in the container and looks for the
invisible watermark in the pictures (media/watermark.py), which survives re-encoding and tag stripping.

Prints one line per finding and exits 0 when the watermark is found, 1 when it is not (so scripts can branch on it);
an unreadable file is the usual one-line error (exit 2).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("files", nargs="+", help="mp4 files to check")
    p.add_argument("--json", action="store_true", help="one JSON object per file instead of text")


def verify(path: Path) -> dict:
    from ..media import read_metadata, read_video
    from ..media.watermark import THRESHOLD, detect

    tags = read_metadata(path)
    frames = read_video(path).frames
    d = detect(frames)
    return {"file": str(path), "watermark": d.marked, "watermark_z": round(d.z, 2), "threshold": THRESHOLD,
            "frames": d.frames, "tags": {k: v for k, v in tags.items() if k.startswith("avatarv_") or k == "comment"}}


def main(args: argparse.Namespace) -> int:
    from ..errors import MediaError

    marked_all = True
    for f in args.files:
        path = Path(f)
        if not path.exists():
            raise MediaError(path, "file not found")
        r = verify(path)
        marked_all &= r["watermark"]
        if args.json:
            print(json.dumps(r))
            continue
        verdict = "avatarv watermark FOUND" if r["watermark"] else "no avatarv watermark"
        print(f"{path}: {verdict} (z = {r['watermark_z']:.1f}, threshold {r['threshold']:g}, {r['frames']} frames)")
        tags = r["tags"]
        if tags:
            print(f"{path}: tags: " + ", ".join(f"{k}={v}" for k, v in sorted(tags.items())))
        else:
            print(f"{path}: no provenance tags (stripped, or not made by avatarv)")
    return 0 if marked_all else 1
