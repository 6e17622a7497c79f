"""Identity metric: known answers (same person > different person), ROC AUC exactness, the ArcFace ONNX path
on a locally exported random network with ArcFace's I/O (1x3x112x112 → 512)."""

from __future__ import annotations

import numpy as np
import pytest
from _eval_fixtures import TEXTS, speech, talking_frames

from avatarv.eval import identity
from avatarv.faces import track_face


@pytest.fixture(scope="module")
def clips():
    a = speech(TEXTS[1], 1.0)
    # identity 0 in two scenes, identities 3 and 4 in one each (real photos, different people)
    return {k: talking_frames(i, a, s, size=128) for k, (i, s) in {"p0s0": (0, 0), "p0s1": (0, 1), "p3": (3, 0), "p4": (4, 0)}.items()}


def _emb(frames, **kw):
    return identity.embed_clip(frames, track_face(frames), n_frames=3, **kw)


def test_same_person_across_scenes_beats_different_people(clips):
    e = {k: _emb(v) for k, v in clips.items()}
    same = identity.identity_similarity(e["p0s1"], e["p0s0"])["face_sim"]
    for other in ("p3", "p4"):
        assert same > identity.identity_similarity(e[other], e["p0s0"])["face_sim"]
    assert identity.identity_similarity(e["p0s0"], e["p0s0"])["face_sim"] == pytest.approx(1.0, abs=1e-5)


def test_roc_auc_known_answers_and_sklearn_agreement():
    from sklearn.metrics import roc_auc_score

    assert identity.roc_auc([0.9, 0.8, 0.1, 0.2], [1, 1, 0, 0]) == 1.0
    assert identity.roc_auc([0.1, 0.2, 0.9, 0.8], [1, 1, 0, 0]) == 0.0
    assert identity.roc_auc([0.5, 0.5], [1, 0]) == 0.5
    rng = np.random.default_rng(0)
    s, y = rng.integers(0, 5, 200).astype(float), rng.random(200) < 0.4
    assert identity.roc_auc(s, y) == pytest.approx(roc_auc_score(y, s))


def test_pair_scores_label_pairs():
    e = np.eye(3, dtype=np.float32)
    scores, same = identity.pair_scores(np.concatenate([e, e[:1]]), ["a", "b", "c", "a"])
    assert same.sum() == 1 and scores[same][0] == pytest.approx(1.0)


@pytest.fixture(scope="module")
def arcface_onnx(tmp_path_factory):
    import torch
    from torch import nn

    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(4), nn.Flatten(),
                        nn.Linear(128, 512)).eval()
    path = tmp_path_factory.mktemp("arcface") / "w600k_random.onnx"
    torch.onnx.export(net, torch.zeros(1, 3, 112, 112), str(path), input_names=["data"], output_names=["fc1"],
                      dynamic_axes={"data": {0: "b"}, "fc1": {0: "b"}}, dynamo=False)
    return path


def test_arcface_onnx_backend_runs_on_local_export(clips, arcface_onnx):
    frames = clips["p0s0"]
    e = _emb(frames, backend="arcface", model_path=str(arcface_onnx))
    assert e.shape == (3, 512)
    assert np.allclose(np.linalg.norm(e, axis=1), 1, atol=1e-5)
    assert np.allclose(e, _emb(frames, backend="arcface", model_path=str(arcface_onnx)))
    assert identity.backend_name("arcface", str(arcface_onnx)).startswith("arcface-onnx")


def test_arcface_without_file_is_a_clear_error(clips, tmp_path):
    with pytest.raises(FileNotFoundError, match=r"missing\.onnx"):
        _emb(clips["p0s0"], backend="arcface", model_path=str(tmp_path / "missing.onnx"))
