"""Media I/O: mp4 (H.264 + AAC) and wav reading/writing, validation with one-line errors, atomic writes, and the
one normaliser (normalize.py) that brings any footage to the working rate."""

from .atomic import atomic_path
from .audio import load_audio, resample, write_wav
from .normalize import WORKING_FPS, WORKING_SAMPLE_RATE, Normalized, as_rate, normalize_audio, normalize_video, retime
from .video import MediaInfo, Video, probe, read_metadata, read_video, write_video

__all__ = ["WORKING_FPS", "WORKING_SAMPLE_RATE", "MediaInfo", "Normalized", "Video", "as_rate", "atomic_path",
           "load_audio", "normalize_audio", "normalize_video", "probe", "read_metadata", "read_video", "resample", "retime",
           "write_video", "write_wav"]
