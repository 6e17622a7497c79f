"""SyncNet backend: weights the test makes (random SyncNetModel, saved) load through our loader and score a clip;
our scorer equals syncnet-python's own SyncNetInstance.evaluate on the same crops and audio."""

from __future__ import annotations

import types

import cv2
import numpy as np
import pytest
import torch
from _eval_fixtures import TEXTS, speech, talking_frames

from avatarv.eval.syncnet_backend import load_syncnet, syncnet_crops, syncnet_from_crops, syncnet_scores
from avatarv.faces import track_face


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    from syncnet_python import SyncNetModel

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("syncnet") / "syncnet_v2.model"
    torch.save(SyncNetModel().state_dict(), path)
    return path


@pytest.fixture(scope="module")
def clip():
    a = speech(TEXTS[0], 1.2)
    return talking_frames(0, a, 0, size=96), a


def test_missing_weights_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nope\.model"):
        load_syncnet(tmp_path / "nope.model")


def test_loaded_weights_equal_the_saved_ones(weights):
    model = load_syncnet(weights)
    saved = torch.load(weights)
    assert all(torch.equal(saved[k], v) for k, v in model.state_dict().items())


def test_scores_a_clip_with_user_weights(weights, clip):
    frames, audio = clip
    r = syncnet_scores(load_syncnet(weights), frames, audio, 16000, track_face(frames).boxes, vshift=5)
    assert np.isfinite([r["lse_c"], r["lse_d"]]).all() and r["lse_c"] >= 0 and r["lse_d"] > 0
    assert -5 <= r["offset"] <= 5


def test_matches_syncnet_python_evaluate(weights, clip, tmp_path, capsys):
    from scipy.io import wavfile
    from syncnet_python import SyncNetInstance

    frames, audio = clip
    crops = syncnet_crops(frames, track_face(frames).boxes)
    for i, c in enumerate(crops):
        cv2.imwrite(str(tmp_path / f"{i:06d}.jpg"), c)
    pcm = np.clip(audio * 32767, -32768, 32767).astype(np.int16)
    wavfile.write(tmp_path / "audio.wav", 16000, pcm)
    model = load_syncnet(weights)
    opt = types.SimpleNamespace(tmp_dir=str(tmp_path), batch_size=20, vshift=5)
    ref_offset, ref_conf, ref_dist = SyncNetInstance(net=model, device="cpu").evaluate(opt=opt)
    decoded = np.stack([cv2.imread(str(tmp_path / f"{i:06d}.jpg")) for i in range(len(crops))])
    ours = syncnet_from_crops(model, decoded, pcm, vshift=5)
    assert ours["offset"] == ref_offset
    assert ours["lse_c"] == pytest.approx(ref_conf, rel=1e-4, abs=1e-5)
    assert ours["lse_d"] == pytest.approx(ref_dist, rel=1e-4)
