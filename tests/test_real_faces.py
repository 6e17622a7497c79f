"""Stage 13's pieces: footage framed as asked (face size, frame, rate) and the summary's known answers."""

import numpy as np
import pandas as pd
from _footage_fixtures import footage

from avatarv.eval.real_faces import summary
from avatarv.faces import detect_faces


def test_footage_is_framed_as_asked():
    clip = footage(seconds=0.5, fps=30, face_fraction=0.15, seed=2)
    assert clip.frames.shape == (15, 360, 640, 3) and clip.fps == 30
    assert len(clip.audio) == 8000 and abs(clip.face_fraction - 0.15) < 0.01
    boxes = detect_faces(clip.frames[0], "dlib")
    assert len(boxes) == 1  # the background photo holds no face
    assert 0.6 * 0.15 < boxes[0].width / 640 < 1.4 * 0.15


def test_summary_known_answer():
    df = pd.DataFrame({
        "kind": ["k"] * 4, "system": ["base"] * 4, "face_found": [1.0, 0.95, 0.9, 0.0],
        "identity_distance": [0.4, 0.5, 0.7, np.nan], "same_person": [True, True, False, False],
        "sync_conf": [0.1, 0.2, 0.3, 0.4],
    })
    row = summary(df).iloc[0]
    assert row["clips"] == 4 and row["face_in_95pct_frames"] == 0.5 and row["same_person_frac"] == 0.5
    assert np.isclose(row["identity_distance_median"], 0.5) and np.isclose(row["sync_conf_mean"], 0.25)


def test_sample_gif_shows_the_reference_beside_the_output(tmp_path):
    from PIL import Image

    from avatarv.eval.real_faces import sample_gif
    from avatarv.media import write_video

    rng = np.random.default_rng(0)
    ref = rng.integers(0, 255, (30, 36, 64, 3), dtype=np.uint8)
    gen = np.zeros((30, 36, 64, 3), np.uint8)
    write_video(tmp_path / "ref.mp4", ref, 25)
    (tmp_path / "generated" / "adapted").mkdir(parents=True)
    write_video(tmp_path / "generated" / "adapted" / "p_25fps.mp4", gen, 25)
    df = pd.DataFrame([{"case_id": "p_25fps", "kind": "held-out synthetic", "reference": str(tmp_path / "ref.mp4")}])
    path = sample_gif(df, tmp_path, tmp_path / "sample.gif", width=128, seconds=1.0, fps=10)
    gif = Image.open(path)
    assert gif.n_frames == 13 and gif.size == (256, 72)  # two 128x72 panels; 1 s of 25 fps, every 2nd frame
    assert gif.info["duration"] == 80  # each picture stands for 2 frames of 25 fps: real-time playback, not 10 fps
    frame = np.asarray(gif.convert("RGB")).astype(float)
    assert frame[30:, :128].std() > 40 and frame[30:, 128:].max() < 40  # noise reference left, black output right
