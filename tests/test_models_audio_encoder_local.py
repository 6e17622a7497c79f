"""AudioEncoder's banded, position-free mode (models/audio_encoder.py): a frame's feature depends only on the sound
within its receptive field (2 front-end convs + patch conv + layers × ±context_frames), not on where the clip
starts — so a 9-frame training window and a whole inference track agree; with absolute positions they do not."""

from __future__ import annotations

import pytest
import torch

from avatarv.models.audio_encoder import AudioEncoder

K = 4  # mel frames per video frame
LAYERS, CONTEXT = 2, 4
REACH = LAYERS * CONTEXT + 1  # video frames: banded attention + the front end's ±2 mel frames (≤ 1 video frame)


def _encoder(**kw):
    torch.manual_seed(0)
    return AudioEncoder(audio_dim=16, layers=LAYERS, heads=2, context_frames=CONTEXT, mel_mean=-8.0, **kw).eval()


def _mel(frames=60, seed=0):
    return torch.randn(1, 80, K * frames, generator=torch.Generator().manual_seed(seed)) * 3 - 8


@torch.no_grad()
def test_slice_of_a_long_clip_gives_the_same_features_away_from_its_edges():
    enc, mel = _encoder(), _mel()
    full = enc(mel)
    for a, b in ((0, 30), (10, 40), (23, 60)):  # slices at the start, middle and end of the track
        part = enc(mel[..., K * a : K * b])
        lo = REACH if a > 0 else 0  # a slice edge that is also the track's edge has the same context
        hi = (b - a) - (REACH if b < 60 else 0)
        torch.testing.assert_close(part[:, lo:hi], full[:, a + lo : a + hi], atol=1e-5, rtol=1e-5)
        # ... and the frames next to a cut edge do change (the check is not vacuous)
        if a > 0:
            assert (part[:, 0] - full[:, a]).abs().max() > 1e-3


@torch.no_grad()
def test_a_sound_reaches_exactly_its_receptive_field():
    enc, mel = _encoder(), _mel()
    hit = 30
    louder = mel.clone()
    louder[..., K * hit + 1 : K * hit + 3] += 5.0  # two mel frames inside video frame 30: convs stay within 29..31
    changed = (enc(louder) - enc(mel)).abs().amax(-1)[0] > 1e-6
    idx = changed.nonzero().flatten().tolist()
    assert idx == list(range(hit - REACH, hit + REACH + 1))


@torch.no_grad()
def test_absolute_positions_make_features_depend_on_the_clip_start():
    enc, mel = _encoder(positional=True), _mel()
    full, part = enc(mel), enc(mel[..., K * 10 : K * 40])
    assert (part[:, REACH:-REACH] - full[:, 10 + REACH : 40 - REACH]).abs().max() > 1e-2


def test_features_and_mouth_read_out_shapes():
    enc = _encoder()
    mel = torch.randn(3, 80, K * 9 + 3) - 8  # a partial last video frame is dropped
    feats = enc(mel)
    assert feats.shape == (3, 9, 16)
    assert enc.mouth(feats).shape == (3, 9, 2)
    enc3 = AudioEncoder(audio_dim=16, layers=1, heads=2, mouth_targets=3)
    assert enc3.mouth(enc3(mel)).shape == (3, 9, 3)
    with pytest.raises(ValueError, match="expected mel"):
        enc(torch.randn(1, 40, 16))


def test_banded_encoder_round_trips_its_config(tmp_path):
    enc = _encoder()
    enc.save_pretrained(tmp_path / "a")
    back = AudioEncoder.from_pretrained(str(tmp_path / "a")).eval()
    assert back.config.positional is False and back.config.context_frames == CONTEXT
    mel = _mel(20)
    with torch.no_grad():
        torch.testing.assert_close(back(mel), enc(mel), atol=0, rtol=0)
