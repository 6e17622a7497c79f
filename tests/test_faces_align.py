"""The face-aligned working space (faces/align.py): transforms with known answers, framing invariance, paste-back
round trip, and one-line errors for missing, too small and several faces."""

import numpy as np
import pytest
from _footage_fixtures import embed, footage

from avatarv.errors import InputError
from avatarv.faces.align import (
    CANONICAL_POINTS,
    align_clip,
    feather_mask,
    invert,
    loop_indices,
    paste_back,
    rescale,
    similarity,
    smooth_transforms,
)


def _apply(m, pts):
    return pts @ m[:, :2].T + m[:, 2]


def test_similarity_recovers_a_known_transform():
    rng = np.random.default_rng(0)
    src = rng.uniform(0, 100, (5, 2))
    s, th, t = 1.7, 0.3, np.array([12.0, -40.0])
    m = np.array([[s * np.cos(th), -s * np.sin(th), t[0]], [s * np.sin(th), s * np.cos(th), t[1]]])
    np.testing.assert_allclose(similarity(src, _apply(m, src)), m, atol=1e-9)
    np.testing.assert_allclose(_apply(invert(m), _apply(m, src)), src, atol=1e-9)


def test_smoothing_keeps_a_still_camera_and_damps_jitter():
    m = similarity(CANONICAL_POINTS, CANONICAL_POINTS * 128 + 5)
    still = np.repeat(m[None], 20, 0)
    np.testing.assert_allclose(smooth_transforms(still, 3.0), still, atol=1e-9)
    rng = np.random.default_rng(1)
    jitter = still.copy()
    jitter[:, :, 2] += rng.normal(0, 2.0, (20, 2))
    smoothed = smooth_transforms(jitter, 3.0)
    assert smoothed[:, :, 2].std(0).max() < 0.5 * jitter[:, :, 2].std(0).min()


def test_loop_plays_forwards_then_backwards():
    assert loop_indices(3, 7).tolist() == [0, 1, 2, 1, 0, 1, 2]
    assert loop_indices(1, 3).tolist() == [0, 0, 0]


@pytest.fixture(scope="module")
def clip():
    return footage(seconds=1.2, face_fraction=0.25)


def test_framing_does_not_change_the_working_space(clip):
    """The same face at another size and place of a wider frame comes out the same in the working space: the
    alignment follows the face, not the frame."""
    a = align_clip(clip.frames, 128)
    big = embed(clip.frames[:, 100:, 150:410], (960, 540), (300, 120), 390)  # a square around the face, x1.5
    b = align_clip(big, 128)
    assert b.face_side > 1.3 * a.face_side
    diff = np.abs(a.frames[:, 16:-16, 16:-16].astype(float) - b.frames[:, 16:-16, 16:-16].astype(float)).mean()
    assert diff < 8.0, diff


def test_canonical_points_land_where_the_corpus_has_them(clip):
    """Warping the tracked landmarks with the fitted transforms puts them at the corpus's mean five points."""
    from avatarv.faces import landmarks_68
    from avatarv.faces.box import Box
    from avatarv.faces.landmarks import five_points

    a = align_clip(clip.frames, 128, smooth_seconds=0.0)
    lm = landmarks_68(a.frames[0], Box(16, 16, 112, 120))
    np.testing.assert_allclose(five_points(lm) / 128, CANONICAL_POINTS, atol=0.06)


def test_paste_back_of_the_aligned_clip_gives_back_the_source(clip):
    """Generating exactly what the working space shows must leave the footage unchanged (up to resampling) inside
    the blend region and exactly unchanged outside it."""
    a = align_clip(clip.frames, 128)
    out = paste_back(a.frames, clip.frames, a.transforms)
    assert out.shape == clip.frames.shape
    region = np.stack([__import__("cv2").warpAffine(feather_mask(128), invert(m), clip.frames.shape[2:0:-1]) for m in a.transforms])
    inside = region > 0.99
    err = np.abs(out.astype(float) - clip.frames.astype(float))
    assert err[inside].mean() < 6.0
    assert (err[region == 0] == 0).all()
    half = paste_back(a.frames[:, ::2, ::2], clip.frames, rescale(a.transforms, 128, 64))  # the model's own size
    assert np.abs(half.astype(float) - clip.frames.astype(float))[inside].mean() < 12.0


def test_errors_name_the_file_and_the_size():
    blank = np.full((6, 360, 640, 3), 120, np.uint8)
    with pytest.raises(InputError, match=r"^clip.mp4: no face found \(640x360 frames"):
        align_clip(blank, 128, source="clip.mp4")
    clip = footage(seconds=0.4, face_fraction=0.2)
    with pytest.raises(InputError, match=r"^clip.mp4: face too small: 1\d\d px in 640x360 frames \(minimum 500 px\)$"):
        align_clip(clip.frames, 128, source="clip.mp4", min_face=500)
    speck = embed(clip.frames[:, 150:, 200:410], (1280, 720), (600, 400), 24)  # a ~15 px face in 720p
    with pytest.raises(InputError, match=r"^clip.mp4: (face too small: \d+ px in 1280x720 frames \(minimum 32 px\)|no face found)"):
        align_clip(speck, 128, source="clip.mp4")


def test_several_faces_pick_the_largest_and_say_so():
    from _footage_fixtures import identities

    from avatarv.eval.real_footage import footage_clip

    small, large = (footage_clip(identities()[k], seconds=0.6, frame=(256, 256), face_fraction=0.55, seed=k).frames
                    for k in (20, 21))
    both = embed(small, (960, 540), (60, 200), 150)
    both[:, 100:420, 520:840] = embed(large, (320, 320), (0, 0), 320)
    alone = embed(large, (960, 540), (520, 100), 320)
    a, b = align_clip(both, 128), align_clip(alone, 128)
    assert a.note.startswith("2 faces; using the largest")
    assert abs(a.face_side - b.face_side) < 0.05 * b.face_side
    assert np.abs(a.frames.astype(float) - b.frames.astype(float)).mean() < 4.0
