"""Shared face toolbox: known answers on real photos (skimage astronaut, insightface's sample images) and
invariants of boxes, tracking and embeddings."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from avatarv.faces import (
    Box,
    cosine_similarity,
    detect_faces,
    embed_faces,
    five_points,
    landmarks_68,
    link_detections,
    mouth_opening,
    track_faces,
)


@pytest.fixture(scope="module")
def astronaut():
    from skimage import data

    return data.astronaut()


def test_box_geometry():
    a, b = Box(0, 0, 10, 10), Box(5, 0, 15, 10)
    assert a.iou(b) == pytest.approx(50 / 150)
    assert a.iou(a) == 1.0 and a.iou(Box(20, 20, 30, 30)) == 0.0
    assert a.scale(2).as_list() == [-5, -5, 15, 15]
    assert Box(-5, -5, 15, 15).clip(12, 8).as_list() == [0, 0, 12, 8]
    assert Box.from_list([1, 2, 3, 4]).side == pytest.approx(2.0)


@pytest.mark.parametrize("backend", ["mediapipe", "dlib"])
def test_detect_finds_astronaut_face(astronaut, backend):
    boxes = detect_faces(astronaut, backend)
    assert boxes, "no face found"
    cx, cy = boxes[0].center  # the face of skimage's astronaut sits around (220, 125) in the 512x512 image
    assert 190 < cx < 250 and 95 < cy < 160
    assert all(boxes[i].score >= boxes[i + 1].score for i in range(len(boxes) - 1))


def test_detect_no_face_on_flat_image():
    assert detect_faces(np.full((128, 128, 3), 128, np.uint8)) == []
    with pytest.raises(ValueError, match="RGB frame"):
        detect_faces(np.zeros((10, 10), np.uint8))


def test_landmarks_inside_face_and_mouth_signal(astronaut):
    box = detect_faces(astronaut)[0]
    lm = landmarks_68(astronaut, box)
    assert lm.shape == (68, 2)
    grown = box.scale(1.5)
    assert np.all((lm[:, 0] > grown.x0) & (lm[:, 0] < grown.x1) & (lm[:, 1] > grown.y0) & (lm[:, 1] < grown.y1))
    assert lm[36:42, 1].mean() < lm[30, 1] < lm[48:60, 1].mean()  # eyes above nose tip above mouth
    assert five_points(lm).shape == (5, 2)
    closed = lm.copy()
    closed[[61, 62, 63]] = closed[[67, 66, 65]]
    opened = closed.copy()
    opened[[65, 66, 67], 1] += 0.3 * np.linalg.norm(lm[54] - lm[48])
    assert mouth_opening(closed) == pytest.approx(0.0, abs=1e-6)
    assert mouth_opening(opened) == pytest.approx(0.3, rel=1e-3)


def test_link_detections_separates_two_people_and_a_cut():
    left = [Box(10 + t, 10, 50 + t, 50) for t in range(6)]
    right = Box(80, 10, 120, 50)
    per_frame = [(t * 5, [left[t]] + ([right] if t >= 2 else [])) for t in range(6)]
    tracks = link_detections(per_frame)
    assert [len(t) for t in tracks] == [6, 4]
    assert tracks[0].box_at(2).x0 == pytest.approx(10.4)  # interpolated between frames 0 and 5
    # a face that vanishes for longer than max_gap steps starts a new track
    gap = [(0, [left[0]]), (5, []), (10, []), (15, []), (20, []), (25, [left[0]])]
    assert len(link_detections(gap, max_gap=3)) == 2


def test_track_faces_on_a_still_clip(astronaut):
    frames = np.repeat(astronaut[None], 6, axis=0)
    tracks, per_frame = track_faces(frames, stride=2)
    assert len(per_frame) == 3 and len(tracks) == 1 and len(tracks[0]) == 3


def test_dlib_embeddings_same_person_vs_others(astronaut):
    import cv2
    import insightface

    img_dir = Path(insightface.__file__).parent / "data" / "images"
    group = cv2.imread(str(img_dir / "t1.jpg"))[..., ::-1].copy()
    others = detect_faces(group, "dlib")[:3]
    flipped = astronaut[:, ::-1].copy()
    small = np.ascontiguousarray(astronaut[::2, ::2])
    frames = [astronaut, flipped, small] + [group] * len(others)
    boxes = [detect_faces(astronaut)[0], detect_faces(flipped)[0], detect_faces(small)[0], *others]
    emb = embed_faces(frames, boxes)
    assert emb.shape == (len(frames), 128)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    sim = cosine_similarity(emb, emb)
    same = min(sim[0, 1], sim[0, 2])
    different = sim[0, 3:].max()
    assert same > 0.9 and different < same - 0.05
    np.testing.assert_allclose(embed_faces(frames[:1], boxes[:1]), emb[:1], atol=1e-6)  # deterministic


def test_arcface_backend_loads_a_local_onnx(tmp_path, astronaut):
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 8, stride=8), torch.nn.Flatten(), torch.nn.Linear(4 * 14 * 14, 512))
    path = tmp_path / "arcface_random.onnx"
    torch.onnx.export(net, torch.zeros(1, 3, 112, 112), str(path), input_names=["data"], output_names=["embedding"],
                      dynamic_axes={"data": {0: "n"}}, dynamo=False)
    box = detect_faces(astronaut)[0]
    emb = embed_faces([astronaut, astronaut], [box, box], backend="arcface", model_path=str(path))
    assert emb.shape == (2, 512)
    np.testing.assert_allclose(emb[0], emb[1], atol=1e-5)
    with pytest.raises(ValueError, match="model_path"):
        embed_faces([astronaut], [box], backend="arcface")
    with pytest.raises(FileNotFoundError):
        embed_faces([astronaut], [box], backend="arcface", model_path=str(tmp_path / "missing.onnx"))
