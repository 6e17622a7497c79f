"""Container and stream probing that can never take the batch down.

The seed's cascade starts by validating raw videos. Some FFmpeg decoders abort the whole process on a corrupt
file (STYLE.md, known traps), so a batch of files is probed and fully demuxed + decoded in a child Python
process; if the child dies or hangs on a file, that file is recorded as unreadable and a fresh child carries on
with the rest. The parent only decodes files the child got through.

Run as `python -m avatarv.curate.probe` (reads a JSON list of paths on stdin, writes one JSON line per file).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

PER_FILE_TIMEOUT_S = 60.0
_START_S = 20.0  # interpreter + PyAV import allowance per child


def probe_one(path: str | Path) -> dict:
    """Open, then decode every video and audio frame of one file; never raises (errors go into the dict)."""
    import av

    from ..errors import AvatarVError
    from ..media import probe

    out = {"path": str(path), "ok": False, "error": "", "width": 0, "height": 0, "fps": 0.0, "declared_frames": 0,
           "decoded_frames": 0, "duration_s": 0.0, "has_video": False, "has_audio": False, "audio_s": 0.0,
           "sample_rate": 0}
    try:
        info = probe(path)
        out.update(width=info.width, height=info.height, fps=info.fps, declared_frames=info.n_frames,
                   duration_s=info.duration, has_video=info.has_video, has_audio=info.has_audio,
                   sample_rate=info.sample_rate)
        with av.open(str(path)) as c:
            if info.has_video:
                out["decoded_frames"] = sum(1 for _ in c.decode(video=0))
        if info.has_audio:
            with av.open(str(path)) as c:
                out["audio_s"] = sum(f.samples for f in c.decode(audio=0)) / max(info.sample_rate, 1)
        out["ok"] = True
    except AvatarVError as e:
        out["error"] = getattr(e, "problem", str(e))
    except Exception as e:  # noqa: BLE001 - a corrupt stream can raise anything from PyAV
        out["error"] = f"corrupt or truncated stream ({type(e).__name__}: {str(e)[:80]})"
    return out


def child_command() -> list[str]:
    """The probe child's command line (a function so tests can swap in a child that crashes)."""
    return [sys.executable, "-m", "avatarv.curate.probe"]


def probe_batch(paths: list[str]) -> list[dict]:
    """Probe many files in a child process; a crash or hang costs one file, never the batch."""
    paths = [str(p) for p in paths]
    results: list[dict] = []
    while len(results) < len(paths):
        rest = paths[len(results):]
        timeout = _START_S + PER_FILE_TIMEOUT_S * len(rest)
        try:
            proc = subprocess.run(child_command(), input=json.dumps(rest),
                                  capture_output=True, text=True, timeout=timeout, check=False)
            stdout, failure = proc.stdout, f"decoder crashed (exit code {proc.returncode})"
        except subprocess.TimeoutExpired as e:
            stdout = e.stdout.decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
            failure = "decoder hung (timed out)"
        done = [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]
        results.extend(done)
        if len(results) < len(paths):
            bad = paths[len(results)]
            results.append({"path": bad, "ok": False, "error": failure})
    return results


def _child() -> int:
    for p in json.loads(sys.stdin.read()):
        print(json.dumps(probe_one(p)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(_child())
