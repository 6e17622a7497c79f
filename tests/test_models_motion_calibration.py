"""fit_motion_calibration: the per-channel map from measured (MediaPipe) motion to the training representation."""

import numpy as np
import pytest

from avatarv.models.motion import apply_motion_calibration, fit_motion_calibration


def test_recovers_a_known_affine_map_and_drops_a_channel_the_extractor_cannot_see():
    g = np.random.default_rng(0)
    truth = [g.normal(0, 1, (50, 16)) for _ in range(3)]
    scale, shift = g.uniform(0.3, 3.0, 16), g.normal(0, 1, 16)
    measured = [(t - shift) / scale for t in truth]  # truth = scale·measured + shift exactly
    blind = 5
    for m in measured:
        m[:, blind] = g.normal(0, 1, len(m))  # the extractor's channel 5 is unrelated to the truth
    cal = fit_motion_calibration(measured, truth)
    keep = np.arange(16) != blind
    np.testing.assert_allclose(np.asarray(cal["scale"])[keep], scale[keep], rtol=1e-4)
    np.testing.assert_allclose(np.asarray(cal["shift"])[keep], shift[keep], atol=1e-4)
    assert abs(cal["scale"][blind]) < 0.2 and abs(cal["r"][blind]) < 0.2
    assert cal["shift"][blind] == pytest.approx(np.concatenate(truth)[:, blind].mean(), abs=0.1)
    mapped = apply_motion_calibration(measured[0], cal)
    np.testing.assert_allclose(mapped[:, keep], truth[0][:, keep], atol=1e-3)
    assert apply_motion_calibration(measured[0], None) is measured[0]


def test_skips_non_finite_frames_and_constant_channels():
    g = np.random.default_rng(1)
    t = g.normal(0, 1, (40, 16))
    m = t * 2.0
    m[:, 3] = 0.7  # constant: no information → the training mean
    m[5] = np.nan  # a frame without a face
    cal = fit_motion_calibration([m], [t])
    assert cal["n_frames"] == 39
    assert cal["scale"][3] == 0.0 and cal["shift"][3] == pytest.approx(np.delete(t, 5, 0)[:, 3].mean(), abs=1e-6)
    assert cal["scale"][0] == pytest.approx(0.5, rel=1e-5)
    with pytest.raises(ValueError, match="fewer than 2"):
        fit_motion_calibration([m[:1]], [t[:1]])
