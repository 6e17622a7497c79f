"""Media I/O: mp4 (H.264 + AAC) and wav reading/writing, validation with one-line errors, atomic writes."""

from .atomic import atomic_path
from .audio import load_audio, resample, write_wav
from .video import MediaInfo, Video, probe, read_video, write_video

__all__ = ["MediaInfo", "Video", "atomic_path", "load_audio", "probe", "read_video", "resample", "write_video", "write_wav"]
