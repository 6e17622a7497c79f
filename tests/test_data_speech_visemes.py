"""Speech timing and phoneme → mouth shape: known answers on espeak-ng output and on hand-made phoneme tracks."""

from __future__ import annotations

import numpy as np
import pytest

from avatarv.data.speech import frame_energy, synthesize
from avatarv.data.visemes import mouth_track, viseme_of


def test_synthesis_is_repeatable_whatever_came_before():
    a = synthesize("Hello there, my friend.", "en-us+m3", 50, 160)
    synthesize("Der kleine Roboter baut ein Boot.", "de+f2", 70, 140)  # espeak-ng keeps state between utterances
    b = synthesize("Hello there, my friend.", "en-us+m3", 50, 160)
    assert np.array_equal(a.audio, b.audio) and a.phonemes == b.phonemes
    assert a.sample_rate == 16000 and 1.0 < a.duration < 3.0


def test_phoneme_timings_are_ordered_and_match_the_audio():
    s = synthesize("Mama buys a big blue balloon.", "en-us", 50, 150)
    starts = [p["start"] for p in s.phonemes]
    assert starts == sorted(starts) and all(p["end"] > p["start"] for p in s.phonemes)
    assert s.phonemes[-1]["end"] <= s.duration + 1e-6
    # vowels are voiced: audio inside vowel phonemes is louder than inside the pauses espeak marks with '_'
    rms = lambda p: float(np.sqrt(np.mean(s.audio[int(p["start"] * 16000) : int(p["end"] * 16000)] ** 2)))
    vowels = [rms(p) for p in s.phonemes if viseme_of(p["ph"]) in ("AA", "EH", "IY", "UW", "OW", "AO")]
    assert vowels and min(vowels) > 0.01


def test_unknown_voice_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown voice"):
        synthesize("x", "no-such-voice", 50, 150)


def test_frame_energy_known_answer():
    sr, fps = 16000, 25
    t = np.arange(sr) / sr
    audio = np.concatenate([0.5 * np.sin(2 * np.pi * 200 * t), np.zeros(sr)]).astype(np.float32)
    e = frame_energy(audio, sr, fps, 50)
    assert np.allclose(e[:25], 0.5 / np.sqrt(2), atol=1e-3) and np.all(e[25:] == 0)


@pytest.mark.parametrize(("ph", "vis"), [("p", "PBM"), ("m", "PBM"), ("f", "FV"), ("aI", "AA"), ("'a", "AA"),
                                         ("u:", "UW"), ("S", "SH"), ("tS", "SH"), ("s", "SZ"), ("_:", "rest"),
                                         ("T", "TH"), ("oU", "OW"), ("i:", "IY"), ("w", "W")])
def test_viseme_classes(ph, vis):
    assert viseme_of(ph) == vis


def test_mouth_track_follows_phonemes_with_coarticulation():
    fps = 25
    phs = [{"ph": "a", "start": 0.4, "end": 0.8}, {"ph": "m", "start": 0.8, "end": 1.2}, {"ph": "u:", "start": 1.2, "end": 1.6}]
    mo, mw = mouth_track(phs, 50, fps)
    assert mo[:7].max() < 0.05  # silence before speech: closed
    assert mo[14:18].min() > 0.8  # open vowel
    assert mo[25:28].max() < 0.1  # bilabial closure is reached (dominant)
    assert mw[33:38].mean() < 0.15  # rounded 'u'
    assert mo[19] < mo[16] and mo[19] > mo[25]  # smooth transition, not a step
    assert mo[45:].max() < 0.05


def test_mouth_opening_tracks_real_speech_energy():
    s = synthesize("Bob and Anna open a big map at the harbour.", "en+f3", 50, 150)
    n = int(s.duration * 25)
    mo, _ = mouth_track(s.phonemes, n, 25)
    e = frame_energy(s.audio, s.sample_rate, 25, n)
    assert np.corrcoef(mo, e)[0, 1] > 0.25
    assert mo[e < 0.2 * e.max()].mean() < mo[e > 0.5 * e.max()].mean()
