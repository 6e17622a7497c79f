"""Inputs for the demo app tests: a saved tiny untrained pipeline, a face clip, speech, and one file per way an
upload can be bad."""

from pathlib import Path

import numpy as np
from _footage_fixtures import footage
from _inference_fixtures import tiny_pipeline, tiny_pipeline_parts

SPEECH_SECONDS = 0.8


def saved_tiny_pipeline(path: Path) -> Path:
    tiny_pipeline(tiny_pipeline_parts()).save_pretrained(path)
    return path


def demo_media(d: Path) -> Path:
    """d/person.mp4 (a face in a 16:9 frame, no audio), d/speech.wav (what that person says in it), and the bad uploads."""
    from PIL import Image

    from avatarv.media import write_video, write_wav

    d.mkdir(parents=True, exist_ok=True)
    clip = footage(seconds=SPEECH_SECONDS, face_fraction=0.25)
    write_video(d / "person.mp4", clip.frames, clip.fps)
    write_wav(d / "speech.wav", clip.audio, clip.sample_rate)
    Image.fromarray(clip.frames[0]).save(d / "person.png")
    Image.fromarray(np.full((96, 160, 3), 128, np.uint8)).save(d / "wall.png")
    write_wav(d / "silence.wav", np.zeros(16000, np.float32), 16000)
    write_video(d / "mute.mp4", clip.frames[:10], 25)
    (d / "broken.mp4").write_bytes(b"\x00not a video" * 50)
    (d / "notes.txt").write_text("not media\n")
    (d / "empty.wav").write_bytes(b"")
    return d
