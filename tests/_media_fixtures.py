"""Footage as phones, cameras and TV clips give it, made with PyAV (and the ffmpeg binary), independent of the
project's own writer: any frame rate (23.976 ... 59.94, variable), stereo audio at 8–48 kHz, rotation metadata,
odd sizes, other containers. Small on purpose (≤ 64x48 px, ≤ 2 s).

Known answers are painted into the content: the left half of every frame is grey level `20 + 100·t` (t = the
frame's presentation time in s), so a decoded frame tells which instant it shows; the audio is a quiet tone with
loud 1 kHz bursts at `BURSTS` s, so a decoded track tells where its time zero is.
"""

from __future__ import annotations

import subprocess
from fractions import Fraction
from pathlib import Path

import numpy as np

BURSTS = (0.5, 1.3)  # s
BURST_S = 0.04
W, H = 64, 48


def timed_frame(t: float, w: int = W, h: int = H, marker: bool = False) -> np.ndarray:
    """Left half grey 20 + 100·t; right half a bar moving with t; `marker` paints the top-left corner red."""
    f = np.full((h, w, 3), 60, np.uint8)
    f[:, : w // 2] = int(round(20 + 100 * t))
    x = w // 2 + int((t * 40) % (w // 2 - 4))
    f[:, x : x + 4] = (230, 230, 40)
    if marker:
        f[: h // 4, : w // 4] = (255, 0, 0)
    return f


def time_of(frame: np.ndarray) -> float:
    """The presentation time painted into a decoded frame (see timed_frame)."""
    w = frame.shape[1]
    return (float(frame[:, 2 : w // 2 - 2].mean()) - 20) / 100


def burst_audio(seconds: float, sample_rate: int, channels: int = 1) -> np.ndarray:
    """(channels, n) float32: a quiet 200 Hz tone with 1 kHz bursts at BURSTS; channel c scaled by 1/(1+c)."""
    t = np.arange(int(round(seconds * sample_rate))) / sample_rate
    a = 0.02 * np.sin(2 * np.pi * 200 * t)
    for b in BURSTS:
        on = (t >= b) & (t < b + BURST_S)
        a[on] += 0.6 * np.sin(2 * np.pi * 1000 * (t[on] - b))
    return np.stack([a / (1 + c) for c in range(channels)]).astype(np.float32)


def first_burst(audio: np.ndarray, sample_rate: int) -> float:
    """Onset (s) of the first loud stretch of a mono track."""
    env = np.abs(audio)
    return float(np.argmax(env > 0.5 * env.max()) / sample_rate)


def write_clip(path: Path, *, fps=Fraction(25), seconds: float = 1.6, times: np.ndarray | None = None,
               size: tuple[int, int] = (W, H), sample_rate: int | None = 16000, channels: int = 1,
               rotation: int = 0, codec: str = "libx264", pix_fmt: str = "yuv420p", frames: np.ndarray | None = None,
               audio: np.ndarray | None = None, marker: bool = False) -> Path:
    """A clip written by PyAV: timed frames at constant `fps` (or at presentation `times`, s: variable rate),
    burst audio (`sample_rate` None: no audio stream) with `channels`, display rotation `rotation` (degrees
    counter-clockwise, as PyAV and phones store it). `frames`/`audio` replace the painted content."""
    import av

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rate = Fraction(fps)
    if times is None:
        n = len(frames) if frames is not None else int(round(seconds * rate))
        times = np.arange(n) / float(rate)
    w, h = size
    tb = Fraction(1, 90000)
    with av.open(str(path), "w") as c:
        vs = c.add_stream(codec, rate=rate)
        vs.width, vs.height, vs.pix_fmt = w, h, pix_fmt
        vs.codec_context.time_base = tb
        if rotation:
            vs.set_display_rotation(rotation)
        ast = None
        if sample_rate:
            ast = c.add_stream("aac", rate=sample_rate, layout="stereo" if channels == 2 else "mono")
        for i, t in enumerate(times):
            img = frames[i] if frames is not None else timed_frame(float(t), w, h, marker)
            vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24").reformat(format=pix_fmt)
            vf.pts, vf.time_base = int(round(t / tb)), tb
            for p in vs.encode(vf):
                c.mux(p)
        for p in vs.encode():
            c.mux(p)
        if ast is not None:
            a = audio if audio is not None else burst_audio(float(times[-1]) + 1 / float(rate), sample_rate, channels)
            a = np.atleast_2d(a).astype(np.float32)
            for i in range(0, a.shape[1], 1024):
                af = av.AudioFrame.from_ndarray(np.ascontiguousarray(a[:, i : i + 1024]), format="fltp",
                                                layout="stereo" if channels == 2 else "mono")
                af.sample_rate, af.pts = sample_rate, i
                for p in ast.encode(af):
                    c.mux(p)
            for p in ast.encode():
                c.mux(p)
    return path


def ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-y", "-loglevel", "error", *args], check=True, capture_output=True)


def ffmpeg_clip(path: Path, *, fps: str = "24000/1001", seconds: float = 1.6, sample_rate: int = 44100,
                channels: int = 2, extra: tuple[str, ...] = ()) -> Path:
    """A clip made by the ffmpeg binary from lavfi sources (testsrc video, sine audio) at `fps`, any container."""
    ffmpeg("-f", "lavfi", "-i", f"testsrc=size={W}x{H}:rate={fps}:duration={seconds}",
           "-f", "lavfi", "-i", f"sine=frequency=440:sample_rate={sample_rate}:duration={seconds}",
           "-ac", str(channels), *extra, "-shortest", str(path))
    return Path(path)
