"""Read and write talking-head mp4s (H.264 video + AAC audio) with PyAV.

Decoding is wrapped so every failure becomes a one-line `MediaError` naming the file; writing goes through a
temporary name so a crash never leaves a half-written mp4. Encoding is deterministic (single-threaded x264,
fixed flags, no timestamps in metadata) so the same frames and audio give the same bytes on any machine.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from ..errors import MediaError
from .atomic import atomic_path

MAX_SIDE = 8192
MAX_SECONDS = 3600.0


@dataclass
class MediaInfo:
    path: str
    width: int
    height: int
    fps: float
    n_frames: int
    duration: float
    has_video: bool
    has_audio: bool
    sample_rate: int
    video_codec: str
    audio_codec: str


@dataclass
class Video:
    frames: np.ndarray  # (T, H, W, 3) uint8 RGB
    fps: float
    audio: np.ndarray  # (N,) float32 mono, empty if no audio
    sample_rate: int

    @property
    def duration(self) -> float:
        return len(self.frames) / self.fps if self.fps else 0.0


def _open(path: Path):
    import av

    if not path.exists():
        raise MediaError(path, "file not found")
    if path.stat().st_size == 0:
        raise MediaError(path, "file is empty")
    try:
        return av.open(str(path))
    except Exception as e:  # noqa: BLE001 - PyAV raises many types for a bad container; one MediaError names the file
        raise MediaError(path, f"not a readable media container ({type(e).__name__})") from None


def probe(path: str | Path) -> MediaInfo:
    """Container/stream facts without decoding everything; raises MediaError for unreadable files."""
    path = Path(path)
    with _open(path) as c:
        vs = c.streams.video[0] if c.streams.video else None
        as_ = c.streams.audio[0] if c.streams.audio else None
        fps = float(vs.average_rate) if vs is not None and vs.average_rate else 0.0
        dur = float(c.duration / 1e6) if c.duration else 0.0
        n = int(vs.frames) if vs is not None and vs.frames else int(round(dur * fps))
        return MediaInfo(
            path=str(path), width=vs.codec_context.width if vs else 0, height=vs.codec_context.height if vs else 0,
            fps=fps, n_frames=n, duration=dur, has_video=vs is not None, has_audio=as_ is not None,
            sample_rate=int(as_.rate) if as_ is not None else 0,
            video_codec=vs.codec_context.name if vs else "", audio_codec=as_.codec_context.name if as_ else "",
        )


def read_video(path: str | Path, *, need_audio: bool = False, video: bool = True, max_frames: int | None = None) -> Video:
    """Decode all frames (RGB uint8) and the first audio stream (mono float32).

    Raises MediaError for a missing/corrupt/truncated file, a missing video stream, or (with need_audio) a
    missing audio stream; absurd sizes are refused before decoding.
    """
    import av

    path = Path(path)
    info = probe(path)
    if video and not info.has_video:
        raise MediaError(path, "no video stream")
    if need_audio and not info.has_audio:
        raise MediaError(path, "no audio stream")
    if video and max(info.width, info.height) > MAX_SIDE:
        raise MediaError(path, f"frame size {info.width}x{info.height} is larger than {MAX_SIDE} px")
    if info.duration > MAX_SECONDS:
        raise MediaError(path, f"duration {info.duration:.0f} s is longer than {MAX_SECONDS:.0f} s")
    frames: list[np.ndarray] = []
    chunks: list[np.ndarray] = []
    sr = info.sample_rate
    try:
        with av.open(str(path)) as c:
            if video:
                for f in c.decode(video=0):
                    frames.append(f.to_ndarray(format="rgb24"))
                    if max_frames and len(frames) >= max_frames:
                        break
        if info.has_audio:
            with av.open(str(path)) as c:
                for f in c.decode(audio=0):
                    a = f.to_ndarray()
                    if a.dtype.kind == "i":
                        a = a.astype(np.float32) / np.iinfo(a.dtype).max
                    a = a.mean(axis=0) if f.format.is_planar else a.reshape(-1, len(f.layout.channels)).mean(axis=1)
                    chunks.append(a.astype(np.float32))
    except MediaError:
        raise
    except Exception as e:  # noqa: BLE001 - a corrupt stream can raise anything from PyAV; one MediaError names the file
        raise MediaError(path, f"corrupt or truncated stream ({type(e).__name__}: {str(e)[:80]})") from None
    if video and not frames:
        raise MediaError(path, "video stream has no decodable frames (truncated?)")
    fps = info.fps or 25.0
    arr = np.stack(frames) if frames else np.zeros((0, info.height, info.width, 3), np.uint8)
    audio = np.concatenate(chunks) if chunks else np.zeros(0, np.float32)
    return Video(frames=arr, fps=fps, audio=audio, sample_rate=sr)


def write_video(
    path: str | Path,
    frames: np.ndarray,
    fps: int = 25,
    audio: np.ndarray | None = None,
    sample_rate: int = 16000,
    crf: int = 18,
) -> Path:
    """Encode RGB frames as H.264 (yuv420p) and optional mono audio as AAC into an mp4, atomically."""
    import av

    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"{path}: frames must be (T, H, W, 3), got {frames.shape}")
    t, h, w, _ = frames.shape
    if h % 2 or w % 2:
        raise ValueError(f"{path}: H.264 yuv420p needs even frame sizes, got {w}x{h}")
    with atomic_path(path) as tmp, av.open(str(tmp), mode="w", format="mp4", options={"fflags": "+bitexact"}) as c:
        vs = c.add_stream("libx264", rate=Fraction(int(fps), 1))
        vs.width, vs.height, vs.pix_fmt = w, h, "yuv420p"
        vs.options = {"crf": str(crf), "preset": "medium", "threads": "1", "x264-params": "threads=1:lookahead-threads=1"}
        vs.thread_count = 1
        ast = None
        if audio is not None and len(audio):
            ast = c.add_stream("aac", rate=int(sample_rate))
            ast.layout = "mono"
            ast.thread_count = 1
        for i in range(t):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(frames[i].astype(np.uint8)), format="rgb24")
            frame.pts = i
            for pkt in vs.encode(frame):
                c.mux(pkt)
        for pkt in vs.encode():
            c.mux(pkt)
        if ast is not None:
            a = np.clip(np.asarray(audio, np.float32), -1, 1)
            step = 1024
            for i in range(0, len(a), step):
                chunk = a[i : i + step]
                af = av.AudioFrame.from_ndarray(chunk[None, :], format="flt", layout="mono")
                af.sample_rate = int(sample_rate)
                af.pts = i
                for pkt in ast.encode(af):
                    c.mux(pkt)
            for pkt in ast.encode():
                c.mux(pkt)
    return Path(path)
