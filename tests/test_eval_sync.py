"""Known answers for the in-repo sync expert: it finds known audio shifts, and its ranked delivered-sync confidence
falls at every larger shift (each sign) and for another clip's audio. Trained once per module on real-photo talking
fixtures (~30 s)."""

from __future__ import annotations

from itertools import pairwise

import numpy as np
import pytest
from _eval_fixtures import TEXTS, shift_audio, small_sync_expert, speech, talking_frames

from avatarv.eval.sync_expert import offset_weight, sync_scores
from avatarv.eval.validation import strictly_falling, validate_sync
from avatarv.models.sync_expert import load_sync_expert, prepare


@pytest.fixture(scope="module")
def expert():
    return small_sync_expert()


@pytest.fixture(scope="module")
def heldout():
    """Two clips of people the expert never saw, with sentences in a new order."""
    out = []
    for ident, text in ((5, 3), (6, 0)):
        a = speech(TEXTS[text], 4.0)
        out.append((talking_frames(ident, a, 0), a))
    return out


def test_training_loss_falls(expert):
    _, history = expert
    assert np.mean(history[-20:]) < 0.5 * np.mean(history[:10])


@pytest.mark.parametrize("shift", [-4, -2, 0, 1, 3, 5])
def test_offset_found_within_one_frame(expert, heldout, shift):
    model, _ = expert
    for frames, audio in heldout:
        r = sync_scores(model, prepare(frames, shift_audio(audio, shift), 16000), max_offset=8)
        assert abs(r["offset"] - shift) <= 1, (shift, r["offset"], r["curve"])


TESTED_SHIFTS = (0, 1, 2, 3, 4, 6, 8)


def test_ranked_confidence_falls_at_every_larger_shift_on_each_side(expert, heldout):
    model, _ = expert
    for f, a in heldout:  # per clip, not only on average
        for sign in (1, -1):
            conf = [sync_scores(model, prepare(f, shift_audio(a, sign * s), 16000))["conf_offset_weighted"]
                    for s in TESTED_SHIFTS]
            assert all(x > y for x, y in pairwise(conf)), (sign, dict(zip(TESTED_SHIFTS, np.round(conf, 4))))


def test_raw_conf_at_zero_falls_over_the_first_window(expert, heldout):
    model, _ = expert
    conf = {s: np.mean([sync_scores(model, prepare(f, shift_audio(a, s), 16000))["conf_at_zero"] for f, a in heldout])
            for s in (0, 1, 2)}
    assert conf[0] > conf[1] > conf[2], conf


def test_swapped_audio_scores_lower_than_synced(expert, heldout):
    model, _ = expert
    (f0, a0), (f1, a1) = heldout
    n = min(len(a0), len(a1))
    synced = [sync_scores(model, prepare(f0, a0, 16000)), sync_scores(model, prepare(f1, a1, 16000))]
    swapped = [sync_scores(model, prepare(f0, a1[:n], 16000)), sync_scores(model, prepare(f1, a0[:n], 16000))]
    for s, w in zip(synced, swapped):
        assert w["conf_offset_weighted"] < s["conf_offset_weighted"] and w["conf_kernel_sum"] < s["conf_kernel_sum"]
        assert w["lse_c"] < s["lse_c"] and w["conf_at_zero"] < s["conf_at_zero"]
        assert w["lse_d"] > s["lse_d"]


def test_offset_weighted_confidence_is_lse_c_discounted_by_the_found_offset(expert, heldout):
    model, _ = expert
    frames, audio = heldout[0]
    for shift in (0, 3):
        r = sync_scores(model, prepare(frames, shift_audio(audio, shift), 16000), sigma=3.0)
        assert r["conf_offset_weighted"] == pytest.approx(r["lse_c"] * np.exp(-r["offset"] ** 2 / 18))
    assert offset_weight([0, 3, -3])[0] == 1.0 and offset_weight([3])[0] == pytest.approx(np.exp(-0.5))


def test_strictly_falling_needs_every_step_on_both_sides():
    good = {0: 0.5, 1: 0.4, -1: 0.41, 2: 0.2, -2: 0.1, 4: 0.05, -4: 0.0}
    assert strictly_falling(good)
    assert not strictly_falling({**good, 4: 0.2})  # flat step at |shift| 2 -> 4 on the positive side
    assert not strictly_falling({**good, -4: 0.3})  # a rise beyond the peak on the negative side
    assert not strictly_falling({0: 0.5, 1: 0.4})  # a side with no shift at all is no evidence


def test_validate_sync_reports_the_ranked_variant_and_passes_on_heldout(expert, heldout):
    model, _ = expert
    clips = [(f, a, 16000, None) for f, a in heldout]
    v = validate_sync(model, clips, shifts=(-8, -4, -2, 0, 2, 4, 8))
    assert v["conf_variant"] == "conf_offset_weighted" and v["conf_monotone"] and v["swap_below_synced"], v
    assert v["conf_by_abs_shift"] == v["variants"]["conf_offset_weighted"]["by_abs_shift"]
    assert v["offset_within_1"] == 1.0
    with pytest.raises(ValueError, match="include 0"):
        validate_sync(model, clips, shifts=(1, 2))


def test_save_load_round_trip_gives_the_same_scores(expert, heldout, tmp_path):
    model, _ = expert
    model.save_pretrained(tmp_path / "sx")
    again = load_sync_expert(tmp_path / "sx")
    frames, audio = heldout[0]
    inp = prepare(frames, audio, 16000)
    assert sync_scores(model, inp) == sync_scores(again, inp)


def test_too_short_clip_is_a_clear_error(expert):
    model, _ = expert
    a = speech(TEXTS[0], 0.2)
    with pytest.raises(ValueError, match="frames"):
        sync_scores(model, prepare(talking_frames(0, a, 0)[:4], a, 16000))
