"""The lip-sync expert loss of A2V/SFT (train/objectives.SyncLoss) and its pieces: differentiable crops equal the eval
crops (cv2), the lip box is faces.mouth_box, the tracker's boxes are normalised per axis, the loss equals the eval
expert's 1 − cos on the same decoded clip, its (1 − t) weighting, gradients, and the `sync` / `audio_mouth` terms of
flow_loss."""

from __future__ import annotations

from unittest import mock

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from avatarv.faces import crop_resize, mouth_box, track_face
from avatarv.inference.conditions import ConditionSpec
from avatarv.models.sync_expert import CROP, WINDOW, SyncExpert
from avatarv.train.objectives import FlowSpec, SyncLoss, crop_rects, flow_loss, lower_face, tracked_face_boxes

T = 7  # video frames (= latent frames, td 1): 3 five-frame windows


# ------------------------------------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def face_clip():
    """(2, T, 64, 80, 3) uint8: the astronaut's face (a real photo), non-square frames so H/W mix-ups show;
    the second clip is the first mirrored, so the two tracked boxes differ."""
    from PIL import Image
    from skimage.data import astronaut

    face = np.asarray(Image.fromarray(astronaut()[:300, 100:400]).resize((64, 64)))
    frame = np.pad(face, ((0, 0), (4, 12), (0, 0)), mode="edge")  # 64 × 80, face off-centre
    clip = np.stack([np.roll(frame, i // 2, axis=1) for i in range(T)])  # slow sideways drift
    return torch.from_numpy(np.stack([clip, clip[:, :, ::-1]]).copy())


@pytest.fixture(scope="module")
def vae():
    from avatarv.models.vae import AvatarVideoVAE

    torch.manual_seed(0)
    v = AvatarVideoVAE(latent_channels=4, base_channels=8, spatial_downsample=4, temporal_downsample=1).eval()
    return v.requires_grad_(False)


@pytest.fixture(scope="module")
def expert():
    torch.manual_seed(1)
    return SyncExpert().eval().requires_grad_(False)


@pytest.fixture(scope="module")
def batch(face_clip):
    g = torch.Generator().manual_seed(2)
    B = len(face_clip)
    return {"frames": face_clip, "face_box": torch.rand(B, T, 4, generator=g),  # only its length is read
            "mel": torch.randn(B, 80, 4 * T, generator=g) * 3 - 8}


def _latents(seed=3, B=2, n=T):
    return torch.randn(B, 4, n, 16, 20, generator=torch.Generator().manual_seed(seed))


def _smooth_image(h=40, w=56, c=3):
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    chans = [100 + 80 * np.sin(xx / 7 + k) * np.cos(yy / 9 - k) + 40 * np.sin((xx + yy) / 11 + 2 * k) for k in range(c)]
    return np.stack(chans, -1).astype(np.float32)


# ------------------------------------------------------------------------------------------------ crops and boxes
BOXES_PX = np.array([[10.0, 6.0, 40.0, 26.0],    # inside, wider than tall, upscaled to 48 × 32
                     [-6.0, 20.0, 30.0, 48.0],   # off the left and bottom edges (border repeats)
                     [5.5, 3.25, 51.0, 38.0],    # fractional, almost the whole frame
                     [20.0, 10.0, 44.0, 40.0]])  # taller than wide


def test_crop_rects_matches_the_eval_crop_of_cv2():
    img = _smooth_image()
    H, W = img.shape[:2]
    frames = torch.from_numpy(img).permute(2, 0, 1)[None].expand(len(BOXES_PX), -1, -1, -1).contiguous()
    boxes = torch.from_numpy(BOXES_PX / np.array([W, H, W, H], np.float32)).float()
    got = crop_rects(frames, boxes, CROP).permute(0, 2, 3, 1).numpy()
    assert got.shape == (len(BOXES_PX), CROP[1], CROP[0], 3)
    # exact geometry: plain-numpy bilinear sampling at crop_resize's convention x = x0 + j·bw/w (pixel centres)
    np.testing.assert_allclose(got, np.stack([_bilinear_crop(img, b) for b in BOXES_PX]), atol=1e-3)
    # and eval's crop_resize itself (cv2's 1/32-px interpolation table leaves ~0.06 on the fractional box)
    err = [np.abs(got[i] - crop_resize(img, b, CROP)).mean() for i, b in enumerate(BOXES_PX)]
    # the plain affine_grid convention, half a pixel off, is clearly worse: the check can tell them apart
    off = [np.abs(got[i] - crop_resize(img, _area_convention(b), CROP)).mean() for i, b in enumerate(BOXES_PX)]
    assert max(err) < 0.1 and min(off) > 3 * max(err), (err, off)


def test_crop_rects_passes_gradients_to_the_frames():
    frames = torch.from_numpy(_smooth_image()).permute(2, 0, 1)[None].requires_grad_(True)
    box = torch.tensor([[0.2, 0.3, 0.6, 0.7]])
    crop_rects(frames, box, (12, 8)).square().sum().backward()
    g = frames.grad[0].abs().sum(0)
    assert torch.isfinite(g).all() and g.sum() > 0
    # only pixels under the box (plus the bilinear fringe) receive gradient
    assert g[:, :8].sum() == 0 and g[:8].sum() == 0 and g[32:].sum() == 0


def test_lower_face_is_the_eval_mouth_box_in_normalised_coordinates():
    g = torch.Generator().manual_seed(0)
    xy0 = torch.rand(3, 5, 2, generator=g) * 0.5
    boxes = torch.cat([xy0, xy0 + 0.1 + torch.rand(3, 5, 2, generator=g) * 0.4], -1)
    W, H = 96.0, 64.0
    scale = torch.tensor([W, H, W, H])
    got = lower_face(boxes) * scale
    want = np.stack([mouth_box(b) for b in (boxes * scale).reshape(-1, 4).numpy()]).reshape(3, 5, 4)
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-5, atol=1e-4)


def test_tracked_face_boxes_are_the_tracker_boxes_normalised_per_axis(face_clip):
    boxes = tracked_face_boxes(face_clip)
    assert boxes.shape == (2, T, 4) and boxes.dtype == torch.float32
    assert (boxes >= 0).all() and (boxes <= 1).all()
    assert (boxes[..., 2] > boxes[..., 0] + 0.2).all() and (boxes[..., 3] > boxes[..., 1] + 0.2).all()
    H, W = face_clip.shape[2:4]
    for b in range(2):
        track = track_face(face_clip[b].numpy())
        assert track.found
        np.testing.assert_allclose(boxes[b].numpy(), track.boxes / np.array([W, H, W, H], np.float32), rtol=1e-6)
    # the mirrored clip's box is the mirror image of the first one's (x flips, y stays)
    np.testing.assert_allclose(1 - boxes[1, :, [2, 0]].numpy(), boxes[0, :, [0, 2]].numpy(), atol=0.04)
    np.testing.assert_allclose(boxes[1, :, [1, 3]].numpy(), boxes[0, :, [1, 3]].numpy(), atol=0.04)


# ------------------------------------------------------------------------------------------------ SyncLoss
def _area_convention(box_px: np.ndarray, size=CROP) -> np.ndarray:
    """The pixel box that makes crop_resize (output pixel j at x0 + j·bw/w) sample where a plain
    grid_sample(align_corners=False) crop would, x0 + (j + ½)·bw/w − ½: the half-pixel-off convention."""
    x0, y0, x1, y1 = box_px
    sx, sy = 0.5 * ((x1 - x0) / size[0] - 1), 0.5 * ((y1 - y0) / size[1] - 1)
    return np.array([x0 + sx, y0 + sy, x1 + sx, y1 + sy], np.float32)


def _bilinear_crop(img: np.ndarray, box_px: np.ndarray, size=CROP) -> np.ndarray:
    """Slow reference crop in plain numpy: output pixel (i, j) samples the image bilinearly at
    x = x0 + j·bw/w (pixel-centre coordinates, crop_resize's convention), coordinates clamped to the frame."""
    x0, y0, x1, y1 = (float(v) for v in box_px)
    H, W = img.shape[:2]
    xs = np.clip(x0 + np.arange(size[0]) * (x1 - x0) / size[0], 0, W - 1)
    ys = np.clip(y0 + np.arange(size[1]) * (y1 - y0) / size[1], 0, H - 1)
    xa, ya = np.minimum(np.floor(xs).astype(int), W - 2), np.minimum(np.floor(ys).astype(int), H - 2)
    fx, fy = (xs - xa)[None, :, None], (ys - ya)[:, None, None]
    img = img.astype(np.float64)
    top = img[ya][:, xa] * (1 - fx) + img[ya][:, xa + 1] * fx
    bottom = img[ya + 1][:, xa] * (1 - fx) + img[ya + 1][:, xa + 1] * fx
    return (top * (1 - fy) + bottom * fy).astype(np.float32)


def _reference_expert_inputs(vae, x0_hat, batch) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per clip, the sync expert's inputs the slow way: decode, cut lower-face crops from the tracker's pixel boxes
    (faces/crop.mouth_box; numpy bilinear sampling, as cv2's 1/32-px table is too coarse for a tight check),
    normalise exactly as models/sync_expert.prepare (which made the expert's training data), cut every 5-frame window.
    Returns [(windows (n, 5, h, w), mel (80, 4T))]."""
    with torch.no_grad():
        video = vae.decode(x0_hat)
    out = []
    for b in range(len(x0_hat)):
        frames = ((video[b].permute(1, 2, 3, 0).numpy() + 1) * 127.5).astype(np.float32)  # float: no rounding
        boxes = track_face(batch["frames"][b].numpy()).boxes
        crops = np.stack([_bilinear_crop(f, mouth_box(bx)) for f, bx in zip(frames, boxes)])
        crops = crops @ np.array([0.299, 0.587, 0.114], np.float32) / 255.0
        crops = (crops - crops.mean(0, keepdims=True)) / (crops.std() + 1e-3)  # prepare's line, verbatim
        mel = batch["mel"][b].numpy()
        mel = (mel - mel.mean(1, keepdims=True)) / (mel.std() + 1e-3)  # prepare's line, verbatim
        starts = np.arange(len(crops) - WINDOW + 1)
        out.append((crops[starts[:, None] + np.arange(WINDOW)], mel))
    return out


def _reference_sync_distance(expert, inputs) -> np.ndarray:
    """Per-clip mean over windows of 1 − cos(expert visual, expert audio)."""
    out = []
    with torch.no_grad():
        for windows, mel in inputs:
            v = expert.embed_visual(torch.from_numpy(windows).float())
            a = expert.embed_audio(torch.from_numpy(mel).float()[None, None])[0]
            out.append(float((1 - (v * a).sum(-1)).mean()))
    return np.array(out)


def _per_clip(loss, x0_hat, t, batch):
    return [float(loss(x0_hat[b : b + 1], t[b : b + 1], {k: v[b : b + 1] for k, v in batch.items()}))
            for b in range(len(x0_hat))]


def test_sync_loss_feeds_the_expert_the_eval_crops_windows_and_mel(vae, expert, batch):
    """Geometry, grey conversion, temporal-mean removal, window alignment and mel normalisation, checked on the
    expert's inputs; the crops' global scale is checked by the next test."""
    x0_hat = _latents()
    ref = _reference_expert_inputs(vae, x0_hat, batch)
    with mock.patch.object(expert, "embed_visual", wraps=expert.embed_visual) as vis, \
            mock.patch.object(expert, "embed_audio", wraps=expert.embed_audio) as aud:
        SyncLoss(vae, expert, time_weighted=False)(x0_hat, torch.zeros(2), batch)
    windows = vis.call_args.args[0].detach().unflatten(0, (2, -1)).numpy()
    mel = aud.call_args.args[0].detach().numpy()
    for b, (ref_windows, ref_mel) in enumerate(ref):
        assert windows[b].shape == ref_windows.shape == (T - WINDOW + 1, WINDOW, CROP[1], CROP[0])
        np.testing.assert_allclose(mel[b, 0], ref_mel, rtol=1e-3, atol=1e-4)  # torch std is unbiased: 1 + 2e-4
        k = float((windows[b] * ref_windows).sum() / (ref_windows**2).sum())  # one positive scale per clip
        assert k > 0
        np.testing.assert_allclose(windows[b], k * ref_windows, atol=1e-3 * np.abs(ref_windows).max())
    # the check is sharp: the neighbouring window or the other clip's crops are far off
    assert np.abs(windows[0][1:] - windows[0][:-1]).max() > 0.1 and np.abs(windows[0] - windows[1]).max() > 0.1


def test_sync_loss_equals_the_eval_experts_distance_on_the_decoded_clip(vae, expert, batch):
    x0_hat = _latents()
    plain = SyncLoss(vae, expert, time_weighted=False)
    ref = _reference_sync_distance(expert, _reference_expert_inputs(vae, x0_hat, batch))
    per_clip = _per_clip(plain, x0_hat, torch.zeros(2), batch)
    assert float(plain(x0_hat, torch.zeros(2), batch)) == pytest.approx(np.mean(per_clip), rel=1e-5)
    np.testing.assert_allclose(per_clip, ref, atol=2e-4)


def test_sync_loss_time_weighting_is_one_minus_t_per_clip(vae, expert, batch):
    x0_hat = _latents()
    loss = SyncLoss(vae, expert)
    plain = SyncLoss(vae, expert, time_weighted=False)
    per_clip = _per_clip(plain, x0_hat, torch.zeros(2), batch)
    assert all(p > 0 for p in per_clip)
    ones = torch.ones(2)
    assert float(loss(x0_hat, ones, batch)) == 0.0
    assert float(plain(x0_hat, ones, batch)) == pytest.approx(np.mean(per_clip), rel=1e-5)  # t ignored when off
    assert float(loss(x0_hat, torch.full((2,), 0.25), batch)) == pytest.approx(0.75 * np.mean(per_clip), rel=1e-5)
    # each clip weighted by its own t: t = (0, 1) keeps only the first clip's term
    assert float(loss(x0_hat, torch.tensor([0.0, 1.0]), batch)) == pytest.approx(per_clip[0] / 2, rel=1e-5)


def test_sync_loss_is_a_finite_scalar_with_gradient_to_x0_hat(vae, expert, batch):
    x0_hat = _latents().requires_grad_(True)
    loss = SyncLoss(vae, expert)(x0_hat, torch.tensor([0.3, 0.6]), batch)
    assert loss.shape == () and torch.isfinite(loss) and 0 < float(loss.detach()) < 2
    loss.backward()
    assert torch.isfinite(x0_hat.grad).all() and x0_hat.grad.abs().sum(dim=(0, 1, 3, 4)).gt(0).all()  # every frame
    assert all(p.grad is None for p in expert.parameters()) and all(p.grad is None for p in vae.parameters())
    x0_hat.grad = None
    SyncLoss(vae, expert)(x0_hat, torch.ones(2), batch).backward()  # t = 1: weight 0, no signal
    assert x0_hat.grad is None or float(x0_hat.grad.abs().max()) == 0.0


@pytest.mark.parametrize("short", ["video", "mel", "face_box"])
def test_sync_loss_is_zero_below_one_window(vae, expert, batch, short):
    n = WINDOW - 1
    x0_hat = _latents(n=n if short == "video" else T)
    b = dict(batch)
    if short == "mel":
        b["mel"] = b["mel"][..., : 4 * n + 3]
    if short == "face_box":
        b["face_box"] = b["face_box"][:, :n]
    loss = SyncLoss(vae, expert)(x0_hat, torch.zeros(2), b)
    assert loss.shape == () and float(loss) == 0.0


# ------------------------------------------------------------------------------------------------ flow_loss terms
class Spy(nn.Module):
    """Wraps the generator like DDP does (`.module`) and records the last call's inputs and prediction."""

    def __init__(self, module):
        super().__init__()
        self.module = module
        self.calls = []

    def forward(self, x_t, t, **kw):
        out = self.module(x_t, t, **kw)
        self.calls.append((x_t.detach().clone(), t.detach().clone(), kw, out.sample.detach().clone()))
        return out


@pytest.fixture(scope="module")
def generator():
    from avatarv.models.audio_encoder import AudioEncoder
    from avatarv.models.dit import AvatarTransformer3DModel
    from avatarv.train.generator import AvatarGenerator

    torch.manual_seed(4)
    dit = AvatarTransformer3DModel(in_channels=4, hidden=32, layers=2, heads=2, audio_dim=16, temporal_downsample=1,
                                   sample_size=64)
    return AvatarGenerator(dit, AudioEncoder(audio_dim=16, layers=1, heads=2, mel_mean=-8.0)).eval()


def _flow_batch(batch):
    g = torch.Generator().manual_seed(5)
    return {**batch, "latents": _latents(seed=6), "motion": torch.rand(2, T, 16, generator=g)}


def test_flow_loss_adds_the_sync_term_on_x0_hat_with_the_bridge_frame_clean(generator, vae, expert, batch):
    b = _flow_batch(batch)
    sync = SyncLoss(vae, expert)
    spec = FlowSpec(ConditionSpec(reference=False, motion=False, first_frame_bridge=True, start_frame=False), cond_dropout=0.0, losses={"sync": 1.0})
    spy = Spy(generator)
    total, terms = flow_loss(spy, b, torch.Generator().manual_seed(7), spec, sync=sync, td=1)
    assert set(terms) == {"flow", "sync"} and terms["sync"] > 0
    assert float(total.detach()) == pytest.approx(terms["flow"] + terms["sync"], rel=1e-5)
    # known answer: the term is SyncLoss on x0_hat = x_t − t·v̂, with the bridge frame replaced by the clean latent
    (x_t, t, kw, pred), = spy.calls
    assert kw["n_bridge"] == 1
    x0_hat = x_t - t.view(-1, 1, 1, 1, 1) * pred
    x0_hat[:, :, :1] = b["latents"][:, :, :1]
    with torch.no_grad():
        assert terms["sync"] == pytest.approx(float(sync(x0_hat, t, b)), rel=1e-4)
    # the weight scales only that term (same draws from the same seed)
    total2, terms2 = flow_loss(generator, b, torch.Generator().manual_seed(7),
                               FlowSpec(ConditionSpec(reference=False, motion=False, first_frame_bridge=True, start_frame=False), cond_dropout=0.0, losses={"sync": 2.5}), sync=sync, td=1)
    assert terms2 == pytest.approx(terms) and float(total2.detach()) == pytest.approx(terms["flow"] + 2.5 * terms["sync"], rel=1e-5)
    # off when its weight is 0 or no SyncLoss is given
    for kw2 in ({"sync": sync, "spec": FlowSpec(ConditionSpec(reference=False, motion=False, first_frame_bridge=True, start_frame=False), losses={})}, {"sync": None, "spec": spec}):
        _, t3 = flow_loss(generator, b, torch.Generator().manual_seed(7), kw2["spec"], sync=kw2["sync"], td=1)
        assert "sync" not in t3


def test_flow_loss_sync_term_sends_gradient_into_the_generator(generator, vae, expert, batch):
    b = _flow_batch(batch)

    def grads(losses, sync):
        generator.zero_grad()
        spec = FlowSpec(ConditionSpec(reference=False, motion=False, first_frame_bridge=True, start_frame=False), cond_dropout=0.0, losses=losses)
        total, terms = flow_loss(generator, b, torch.Generator().manual_seed(8), spec, sync=sync, td=1)
        total.backward()
        out = {n: p.grad.clone() for n, p in generator.named_parameters() if p.grad is not None}
        generator.zero_grad()
        return out, terms

    with_sync, terms = grads({"sync": 1.0}, SyncLoss(vae, expert, time_weighted=False))
    flow_only, terms0 = grads({}, None)
    assert terms0["flow"] == pytest.approx(terms["flow"], rel=1e-6)  # same draws: the difference is the sync term
    for part in ("transformer.", "audio_encoder."):
        diff = sum(float((g - flow_only[n]).abs().sum()) for n, g in with_sync.items() if n.startswith(part))
        assert diff > 0, part
    assert all(torch.isfinite(g).all() for g in with_sync.values())


def test_flow_loss_audio_mouth_is_the_encoders_mouth_readout_mse(generator, batch):
    b = _flow_batch(batch)
    spec = FlowSpec(ConditionSpec(reference=False, motion=False, first_frame_bridge=True, start_frame=False), cond_dropout=0.0, losses={"audio_mouth": 1.0})
    enc = generator.audio_encoder
    with torch.no_grad():
        pred = enc.mouth(enc(b["mel"].float()))
    assert pred.shape == (2, T, 2)
    want = float(F.mse_loss(pred, b["motion"][:, :, 5:7]))
    total, terms = flow_loss(Spy(generator), b, torch.Generator().manual_seed(7), spec, td=1)  # reached via .module
    assert set(terms) == {"flow", "audio_mouth"}
    assert terms["audio_mouth"] == pytest.approx(want, rel=1e-5)
    assert float(total.detach()) == pytest.approx(terms["flow"] + want, rel=1e-5)
    # known answer: motion channels 5, 6 set to the read-out → 0; other channels are not its target
    motion = b["motion"].clone()
    motion[:, :, 5:7] = pred
    motion[:, :, :5] += 1.0
    _, terms = flow_loss(generator, {**b, "motion": motion}, torch.Generator().manual_seed(7), spec, td=1)
    assert terms["audio_mouth"] == pytest.approx(0.0, abs=1e-10)
    # absent without motion in the batch or without the audio condition
    _, t1 = flow_loss(generator, {k: v for k, v in b.items() if k != "motion"}, torch.Generator().manual_seed(7), spec, td=1)
    _, t2 = flow_loss(generator, b, torch.Generator().manual_seed(7),
                      FlowSpec(ConditionSpec(audio=False, reference=False, motion=False, first_frame_bridge=True, start_frame=False), losses={"audio_mouth": 1.0}), td=1)
    assert "audio_mouth" not in t1 and "audio_mouth" not in t2


@torch.no_grad()
def test_sync_loss_uses_precomputed_tracker_boxes_when_the_batch_has_them(vae, expert, batch):
    """A window cache that carries the tracker's boxes (WindowSet.tracked_box, for machines without MediaPipe) gives
    the same loss as tracking the frames per batch; other boxes give another loss (the boxes are really read)."""
    x0_hat, t = _latents(), torch.tensor([0.3, 0.6])
    tracked = tracked_face_boxes(batch["frames"])
    own = SyncLoss(vae, expert)(x0_hat, t, batch)
    given = SyncLoss(vae, expert)(x0_hat, t, {**batch, "tracked_box": tracked})
    torch.testing.assert_close(given, own)
    with mock.patch("avatarv.train.objectives.tracked_face_boxes", side_effect=AssertionError("tracked again")):
        SyncLoss(vae, expert)(x0_hat, t, {**batch, "tracked_box": tracked})
    shifted = SyncLoss(vae, expert)(x0_hat, t, {**batch, "tracked_box": tracked + torch.tensor([0.1, 0.0, 0.1, 0.0])})
    assert abs(float(shifted) - float(own)) > 1e-4
