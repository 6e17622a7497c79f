"""Read and write talking-head mp4s (H.264 video + AAC audio) with PyAV.

Decoding is wrapped so every failure becomes a one-line `MediaError` naming the file; frames come out upright
(a phone clip's display-matrix rotation is applied) with each frame's presentation time, so media/normalize.py
can retime any rate, constant or variable, to the working rate. Writing takes any rational frame rate
(30000/1001 ...) and goes through a temporary name so a crash never leaves a half-written mp4. Encoding is
deterministic (single-threaded x264, fixed flags, no timestamps in metadata) so the same frames and audio give the
same bytes on any machine.
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


AAC_RATES = (96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350)


@dataclass
class MediaInfo:
    path: str
    width: int  # as displayed: a 90/270 degree rotation swaps the coded sides
    height: int
    fps: float
    n_frames: int
    duration: float
    has_video: bool
    has_audio: bool
    sample_rate: int
    video_codec: str
    audio_codec: str
    rate: Fraction = Fraction(0)  # the stream's average frame rate as a fraction (30000/1001); 0 without video
    rotation: int = 0  # degrees counter-clockwise the decoded picture is turned for display (0/90/180/270)
    channels: int = 0  # audio channels before the mono mix


@dataclass
class Video:
    frames: np.ndarray  # (T, H, W, 3) uint8 RGB, upright
    fps: float
    audio: np.ndarray  # (N,) float32 mono, empty if no audio
    sample_rate: int
    times: np.ndarray | None = None  # (T,) presentation time of each frame, s from the first frame; None = uniform
    audio_start: float = 0.0  # time of the first audio sample relative to the first frame, s
    source: MediaInfo | None = None  # the file's stream facts (probe)

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


def _first_frame_rotation(c) -> int:
    """Display rotation (degrees counter-clockwise, 0/90/180/270) from the first decoded frame's display matrix;
    0 when the stream has none or the first frame does not decode (decoding errors surface in read_video)."""
    try:
        for f in c.decode(video=0):
            return int(round((f.rotation or 0) / 90.0)) % 4 * 90
    except Exception:  # noqa: BLE001 - read_video reports the decoding error itself
        pass
    return 0


def probe(path: str | Path) -> MediaInfo:
    """Container/stream facts, decoding only the first frame (for its rotation); raises MediaError for unreadable
    files."""
    path = Path(path)
    with _open(path) as c:
        vs = c.streams.video[0] if c.streams.video else None
        as_ = c.streams.audio[0] if c.streams.audio else None
        rate = Fraction(0)
        if vs is not None and vs.average_rate:
            from .normalize import as_rate

            rate = as_rate(float(vs.average_rate))  # frames/duration; an NTSC rate comes back as n·1000/1001
        fps = float(rate)
        dur = float(c.duration / 1e6) if c.duration else 0.0
        n = int(vs.frames) if vs is not None and vs.frames else int(round(dur * fps))
        w, h = (vs.codec_context.width, vs.codec_context.height) if vs is not None else (0, 0)
        rotation = _first_frame_rotation(c) if vs is not None else 0
        if rotation in (90, 270):
            w, h = h, w
        return MediaInfo(
            path=str(path), width=w, height=h, fps=fps, n_frames=n, duration=dur, has_video=vs is not None,
            has_audio=as_ is not None, sample_rate=int(as_.rate) if as_ is not None else 0,
            video_codec=vs.codec_context.name if vs else "", audio_codec=as_.codec_context.name if as_ else "",
            rate=rate, rotation=rotation, channels=int(as_.channels) if as_ is not None else 0,
        )


def read_video(path: str | Path, *, need_audio: bool = False, video: bool = True, max_frames: int | None = None,
               max_seconds: float | None = None) -> Video:
    """Decode all frames (RGB uint8, upright) with their presentation times and the first audio stream (mono
    float32, at its own rate), at the file's own frame rate; media/normalize.py brings them to the working rate.

    Decoding stops after `max_frames` frames or at the first frame `max_seconds` or later after the first one.
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
    times: list[float] = []
    chunks: list[np.ndarray] = []
    sr = info.sample_rate
    t0 = a0 = None
    try:
        with av.open(str(path)) as c:
            vs = c.streams.video[0] if info.has_video else None
            if vs is not None and vs.start_time is not None and vs.time_base:
                t0 = float(vs.start_time * vs.time_base)
            if video:
                for f in c.decode(video=0):
                    t = f.time if f.time is not None else (times[-1] + 1 / (info.fps or 25.0) if times else 0.0)
                    if max_seconds is not None and times and t - times[0] >= max_seconds:
                        break
                    frames.append(f.to_ndarray(format="rgb24"))
                    times.append(float(t))
                    if max_frames and len(frames) >= max_frames:
                        break
        if times:
            t0 = times[0]
        if info.has_audio:
            with av.open(str(path)) as c:
                for f in c.decode(audio=0):
                    if a0 is None and f.time is not None:
                        a0 = float(f.time)
                    a = f.to_ndarray()
                    if a.dtype.kind == "i":
                        a = a.astype(np.float32) / np.iinfo(a.dtype).max
                    elif a.dtype.kind == "u":  # unsigned 8-bit PCM: silence is 128
                        a = (a.astype(np.float32) - 128.0) / 128.0
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
    if info.rotation and len(arr):
        arr = np.ascontiguousarray(np.rot90(arr, info.rotation // 90, axes=(1, 2)))
    audio = np.concatenate(chunks) if chunks else np.zeros(0, np.float32)
    audio_start = a0 - t0 if a0 is not None and t0 is not None else 0.0
    frame_times = np.asarray(times, np.float64) - times[0] if times else None
    return Video(frames=arr, fps=fps, audio=audio, sample_rate=sr, times=frame_times, audio_start=audio_start,
                 source=info)


def write_video(
    path: str | Path,
    frames: np.ndarray,
    fps: Fraction | float | str = 25,
    audio: np.ndarray | None = None,
    sample_rate: int = 16000,
    crf: int = 18,
    metadata: dict[str, str] | None = None,
) -> Path:
    """Encode RGB frames as H.264 (yuv420p) at a rational rate (`fps`: 25, Fraction(30000, 1001), 29.97 or
    "30000/1001"; see normalize.as_rate) and optional mono audio as AAC into an mp4, atomically. Audio at a rate
    AAC cannot carry is resampled to the next rate it can. `metadata`: container tags (any key; read back with
    `read_metadata`)."""
    import av

    from .normalize import as_rate

    rate = as_rate(fps)
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"{path}: frames must be (T, H, W, 3), got {frames.shape}")
    t, h, w, _ = frames.shape
    if h % 2 or w % 2:
        raise ValueError(f"{path}: H.264 yuv420p needs even frame sizes, got {w}x{h}")
    options = {"fflags": "+bitexact", **({"movflags": "use_metadata_tags"} if metadata else {})}
    with atomic_path(path) as tmp, av.open(str(tmp), mode="w", format="mp4", options=options) as c:
        c.metadata.update({str(k): str(v) for k, v in (metadata or {}).items()})
        vs = c.add_stream("libx264", rate=rate)
        vs.width, vs.height, vs.pix_fmt = w, h, "yuv420p"
        vs.options = {"crf": str(crf), "preset": "medium", "threads": "1", "x264-params": "threads=1:lookahead-threads=1"}
        vs.thread_count = 1
        ast = None
        if audio is not None and len(audio) and int(sample_rate) not in AAC_RATES:
            from .audio import resample

            target = min((r for r in AAC_RATES if r >= int(sample_rate)), default=AAC_RATES[0])
            audio, sample_rate = resample(np.asarray(audio, np.float32), int(sample_rate), target), target
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


def read_metadata(path: str | Path) -> dict[str, str]:
    """The container tags of a media file (what `write_video(metadata=...)` wrote, plus the muxer's own)."""
    import av

    try:
        with av.open(str(path)) as c:
            return dict(c.metadata)
    except (av.error.FFmpegError, OSError) as e:
        from ..errors import MediaError

        raise MediaError(path, f"unreadable container ({type(e).__name__})") from None
