"""The invisible watermark (media/watermark.py) and `avatarv verify`: found after re-encoding at low bitrates, not
found on clean clips or under another key, invisible enough (PSNR), and the CLI's one-line answers."""

import av
import numpy as np
import pytest
from _footage_fixtures import footage

from avatarv.media import read_video, write_video
from avatarv.media.watermark import THRESHOLD, code, detect, embed


def _reencode(src, dst, bitrate: int):
    frames = read_video(src).frames
    with av.open(str(dst), "w") as c:
        s = c.add_stream("libx264", rate=25)
        s.width, s.height, s.pix_fmt, s.bit_rate = frames.shape[2], frames.shape[1], "yuv420p", bitrate
        for f in frames:
            for p in s.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return read_video(dst).frames


@pytest.fixture(scope="module")
def clip():
    return footage(seconds=2.0, face_fraction=0.2, seed=7).frames


def test_code_is_balanced_in_pairs():
    c = code(40)
    assert set(np.unique(c)) == {-1.0, 1.0} and c.sum() == 0
    assert (c[:4] == c[0]).all() and c[4] == -c[0]


def test_survives_reencoding_and_is_absent_elsewhere(clip, tmp_path):
    marked = embed(clip)
    psnr = 10 * np.log10(255**2 / np.mean((marked.astype(float) - clip.astype(float)) ** 2))
    assert psnr > 38
    write_video(tmp_path / "m.mp4", marked, 25)
    for bitrate in (1_000_000, 300_000):
        assert detect(_reencode(tmp_path / "m.mp4", tmp_path / "r.mp4", bitrate)).z > 2 * THRESHOLD
    assert abs(detect(clip).z) < THRESHOLD / 2
    assert abs(detect(marked, key="someone-else").z) < THRESHOLD / 2


def test_verify_cli(clip, tmp_path, capsys):
    from avatarv.cli import main

    write_video(tmp_path / "ai.mp4", embed(clip), 25, metadata={"avatarv_model_hash": "1234abcd"})
    write_video(tmp_path / "real.mp4", clip, 25)
    assert main(["verify", str(tmp_path / "ai.mp4")]) == 0
    out = capsys.readouterr().out
    assert "avatarv watermark FOUND" in out and "avatarv_model_hash=1234abcd" in out
    assert main(["verify", str(tmp_path / "real.mp4")]) == 1
    assert "no avatarv watermark" in capsys.readouterr().out
    assert main(["verify", str(tmp_path / "missing.mp4")]) == 2
    err = capsys.readouterr().err.strip()
    assert "missing.mp4: file not found" in err and len(err.splitlines()) == 1
