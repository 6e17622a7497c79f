"""Known answers for the in-repo sync expert: it finds known audio shifts, and its confidence falls with the
shift and for another clip's audio. Trained once per module on real-photo talking fixtures (~30 s)."""

from __future__ import annotations

import numpy as np
import pytest

from _eval_fixtures import TEXTS, shift_audio, speech, talking_frames
from avatarv.eval.sync_expert import load_sync_expert, prepare, sync_scores, train_sync_expert


@pytest.fixture(scope="module")
def expert():
    import torch

    torch.set_num_threads(1)
    clips = []
    for ident in range(5):
        for scene in range(2):
            a = speech(TEXTS[(ident + 2 * scene) % len(TEXTS)], 4.0, voice=("en-us", "en-gb", "en-us+f3")[ident % 3])
            clips.append(prepare(talking_frames(ident, a, scene), a, 16000))
    model, history = train_sync_expert(clips, steps=120, batch_size=32, seed=0, progress=False)
    return model, history


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


def test_confidence_falls_with_shift_and_for_swapped_audio(expert, heldout):
    model, _ = expert
    conf = {s: np.mean([sync_scores(model, prepare(f, shift_audio(a, s), 16000))["conf_at_zero"] for f, a in heldout])
            for s in (0, 1, 2, 4, 8)}
    assert conf[0] > conf[1] > conf[2], conf
    assert max(conf[4], conf[8]) < conf[1], conf
    (f0, a0), (f1, a1) = heldout
    n = min(len(a0), len(a1))
    synced = [sync_scores(model, prepare(f0, a0, 16000)), sync_scores(model, prepare(f1, a1, 16000))]
    swapped = [sync_scores(model, prepare(f0, a1[:n], 16000)), sync_scores(model, prepare(f1, a0[:n], 16000))]
    for s, w in zip(synced, swapped):
        assert w["lse_c"] < s["lse_c"] and w["conf_at_zero"] < s["conf_at_zero"]
        assert w["lse_d"] > s["lse_d"]


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
