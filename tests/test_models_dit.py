"""AvatarTransformer3DModel: cached reference == uncached joint model, sparse == dense, conditioning is live."""


import pytest
import torch

from avatarv.models.dit import AvatarTransformer3DModel
from avatarv.models.latent_time import as_latent_rate, audio_windows, expand_to_video_rate, pool_to_latent_rate
from avatarv.models.rope import apply_rope, rope_cos_sin, token_positions

TOL = dict(atol=2e-5, rtol=2e-5)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return AvatarTransformer3DModel(in_channels=4, hidden=32, layers=2, heads=2, audio_dim=8).eval()


def _inputs(seed=0, B=2, T=3):
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g)
    return dict(latents=r(B, 4, T, 8, 8), motion=r(B, T, 16), audio=r(B, 1 + 4 * (T - 1), 8), text=r(B, 5, 384),
                ref=r(1, 4, 2, 8, 8), ref_motion=r(1, 2, 16), anchor=r(1, 4, 1, 8, 8), anchor_motion=r(1, 1, 16))


@torch.no_grad()
@pytest.mark.parametrize("attention", ["dense", "sparse"])
def test_cached_equals_uncached_over_steps_and_chunks(model, attention):
    x = _inputs()
    cache = model.encode_reference(x["ref"], x["ref_motion"])
    anchored = model.extend_reference(cache, x["anchor"], x["anchor_motion"])
    for step, t in enumerate([0.95, 0.5, 0.1]):
        for c, segs, n_bridge in [(cache, [(x["ref"], x["ref_motion"])], 0),
                                  (anchored, [(x["ref"], x["ref_motion"]), (x["anchor"], x["anchor_motion"])], 1)]:
            ts = torch.tensor([t, t * 0.5])
            out = model(x["latents"] + step, ts, x["motion"], x["audio"], x["text"], reference=c, n_bridge=n_bridge)
            ref = model.forward_uncached(x["latents"] + step, ts, x["motion"], x["audio"], x["text"], segs,
                                         n_bridge=n_bridge, attention=attention)
            torch.testing.assert_close(out.sample, ref.sample, **TOL)
            torch.testing.assert_close(out.motion, ref.motion, **TOL)


@torch.no_grad()
def test_reference_conditions_the_output(model):
    x = _inputs()
    a = model(x["latents"], 0.5, x["motion"], reference=model.encode_reference(x["ref"], x["ref_motion"])).sample
    b = model(x["latents"], 0.5, x["motion"], reference=model.encode_reference(x["ref"] * -1, x["ref_motion"])).sample
    c = model(x["latents"], 0.5, x["motion"]).sample
    assert (a - b).abs().max() > 1e-3 and (a - c).abs().max() > 1e-3


@torch.no_grad()
def test_reference_cache_ignores_generation(model):
    """The cache depends on the reference alone (no t, audio, text, or generation tokens go in)."""
    x = _inputs()
    c1 = model.encode_reference(x["ref"], x["ref_motion"])
    c2 = model.encode_reference(x["ref"].clone(), x["ref_motion"].clone())
    for k1, k2 in zip(c1.keys + c1.values, c2.keys + c2.values):
        torch.testing.assert_close(k1, k2, atol=0, rtol=0)
    extended = model.extend_reference(c1, x["anchor"], x["anchor_motion"])
    n = c1.n_tokens
    for k1, k2 in zip(c1.keys, extended.keys):
        assert torch.equal(k1, k2[:, :, :n])  # appending the anchor leaves the reference K/V untouched
    assert extended.segment_tokens == [2 * 17, 17] and c1.nbytes() == 2 * 2 * 2 * 34 * 16 * 4


@torch.no_grad()
def test_drop_reference_equals_no_reference(model):
    x = _inputs()
    cache = model.encode_reference(x["ref"], x["ref_motion"])
    drop = torch.tensor([False, True])
    out = model(x["latents"], 0.4, x["motion"], x["audio"], reference=cache, drop_reference=drop).sample
    torch.testing.assert_close(out[1:], model(x["latents"][1:], 0.4, x["motion"][1:], x["audio"][1:]).sample, **TOL)
    torch.testing.assert_close(out[:1], model(x["latents"][:1], 0.4, x["motion"][:1], x["audio"][:1], reference=cache).sample, **TOL)


@torch.no_grad()
def test_drop_audio_and_text_equal_null(model):
    x = _inputs()
    drop = torch.tensor([True, False])
    out = model(x["latents"], 0.4, x["motion"], x["audio"], x["text"], drop_audio=drop, drop_text=drop).sample
    null = model(x["latents"][:1], 0.4, x["motion"][:1]).sample
    torch.testing.assert_close(out[:1], null, **TOL)
    assert (out[1:] - model(x["latents"][1:], 0.4, x["motion"][1:]).sample).abs().max() > 1e-3


@torch.no_grad()
def test_audio_window_is_local(model):
    """Changing the audio of the last video frames changes only the latent frames whose window covers them."""
    x = _inputs(T=4)  # 13 video frames; latent 3 ↔ frames 9..12; margin 2 → latent 2's window reaches frame 10
    a2 = x["audio"].clone()
    a2[:, 12:] += 3.0  # frame 12: inside latent 3's window only (latent 2 sees up to 8 + 2 = 10)
    o1 = model(x["latents"], 0.5, x["motion"], x["audio"]).sample
    o2 = model(x["latents"], 0.5, x["motion"], a2).sample
    # self-attention spreads the change, so compare a 1-layer view: the block's audio context mask itself
    ctx1 = model._audio_context(x["audio"], 4, 0, None, 2, "cpu", torch.float32)
    ctx2 = model._audio_context(a2, 4, 0, None, 2, "cpu", torch.float32)
    changed = ((ctx1[0] - ctx2[0]).abs().amax(dim=(0, 2, 3)) > 0).tolist()
    assert changed == [False, False, False, True] and (o1 - o2).abs().max() > 0


def test_bridge_frames_are_modulated_clean(model):
    t = torch.tensor([0.7])
    mods, _ = model._generation_mods(t, 3, 1, torch.float32)
    clean, _ = model._clean_mods("cpu", torch.float32)
    noisy, _ = model._generation_mods(t, 3, 0, torch.float32)
    torch.testing.assert_close(mods[:, 0], clean[:, 0])
    torch.testing.assert_close(mods[:, 1:], noisy.expand(-1, 2, -1, -1))


def test_backward_through_cache():
    torch.manual_seed(1)
    m = AvatarTransformer3DModel(in_channels=4, hidden=32, layers=2, heads=2, audio_dim=8)
    m.enable_gradient_checkpointing()
    x = _inputs()
    out = m(x["latents"], torch.rand(2), x["motion"], x["audio"], reference=m.encode_reference(x["ref"], x["ref_motion"]))
    (out.sample.square().mean() + out.motion.square().mean()).backward()
    assert m.patch_embed.weight.grad.abs().sum() > 0 and m.blocks[0].to_qkv.weight.grad.abs().sum() > 0


def test_save_load_roundtrip(tmp_path, model):
    model.save_pretrained(tmp_path / "dit")
    loaded = AvatarTransformer3DModel.from_pretrained(tmp_path / "dit").eval()
    x = _inputs()
    with torch.no_grad():
        torch.testing.assert_close(loaded(x["latents"], 0.3, x["motion"]).sample, model(x["latents"], 0.3, x["motion"]).sample, atol=0, rtol=0)


def test_seeded_init_is_deterministic():
    torch.manual_seed(5)
    a = AvatarTransformer3DModel(in_channels=4, hidden=32, layers=1, heads=2)
    torch.manual_seed(5)
    b = AvatarTransformer3DModel(in_channels=4, hidden=32, layers=1, heads=2)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))


def test_rope_relative_and_reference_times():
    cos, _ = rope_cos_sin(token_positions(3, 2, 2, time_offset=-256.0, motion_token=True), 12)
    assert cos.shape == (3 * 5, 6)
    pos = token_positions(1, 1, 1, time_offset=-256.0)
    assert pos.tolist() == [[-256.0, 0.0, 0.0]]
    # relative: <R(a)q, R(b)k> depends on a - b only
    q, k = torch.randn(1, 1, 1, 12), torch.randn(1, 1, 1, 12)
    p = lambda t: rope_cos_sin(torch.tensor([[t, 1.0, 2.0]]), 12)
    d1 = (apply_rope(q, *p(5.0)) * apply_rope(k, *p(2.0))).sum()
    d2 = (apply_rope(q, *p(13.0)) * apply_rope(k, *p(10.0))).sum()
    torch.testing.assert_close(d1, d2, atol=1e-5, rtol=1e-5)


def test_latent_time_helpers():
    x = torch.arange(10.0).view(1, 10, 1)  # 10 video frames → latents [0], [1..4], [5..8], [9]
    assert pool_to_latent_rate(x, 4).flatten().tolist() == [0.0, 2.5, 6.5, 9.0]
    assert expand_to_video_rate(pool_to_latent_rate(x, 4), 4, 10).shape == (1, 10, 1)
    assert as_latent_rate(x, 4, 4).shape == (1, 4, 1)
    assert audio_windows(2, 4, 1).tolist() == [[-4, -3, -2, -1, 0, 1], [0, 1, 2, 3, 4, 5]]


@torch.no_grad()
def test_reference_tokens_unaffected_by_generation_in_joint_model(model):
    """Inside the uncached joint model, every block's reference keys are the same whatever the generation tokens."""
    x = _inputs()
    n_ref = 2 * 17
    captured = []
    hooks = [b.to_qkv.register_forward_hook(lambda m, i, o: captured.append(o[:, :n_ref].clone())) for b in model.blocks]
    try:
        for lat in (x["latents"], x["latents"] * 3 + 1):
            model.forward_uncached(lat, 0.5, x["motion"], x["audio"], x["text"], [(x["ref"], x["ref_motion"])])
    finally:
        for h in hooks:
            h.remove()
    first, second = captured[:2], captured[2:]
    for a, b in zip(first, second):
        torch.testing.assert_close(a[:1].expand_as(b), b, atol=1e-6, rtol=1e-6)


def test_text_encoder_offline_tokens_and_cache():
    from avatarv.models import text_encoder

    emb, mask = text_encoder.encode_text_with_mask(["a man talks in an office", "hello"])
    assert emb.shape[0] == 2 and emb.shape[2] == 384 and mask.sum(1).tolist()[1] == 3  # [CLS] hello [SEP]
    assert (emb[1, 3:] == 0).all() and emb[0].abs().sum() > 0
    again = text_encoder.encode_text(["hello"])
    torch.testing.assert_close(again[0], emb[1, :3])
    assert ("hello", text_encoder.MAX_TOKENS) in text_encoder._cache


@pytest.fixture(scope="module")
def conditioned():
    """A frame-conditioned model whose condition weights are switched on (they start at zero)."""
    torch.manual_seed(0)
    m = AvatarTransformer3DModel(in_channels=4, hidden=32, layers=2, heads=2, audio_dim=8, frame_condition=True).eval()
    with torch.no_grad():
        m.patch_embed.weight[:, 4 * 4 :].normal_(0, 0.2)
    return m


@torch.no_grad()
def test_frame_condition_starts_ignored():
    """Fresh condition columns are zero: a model built with frame_condition behaves as if none were given, so a
    T2V checkpoint (which never feeds one) starts A2V unchanged."""
    torch.manual_seed(0)
    m = AvatarTransformer3DModel(in_channels=4, hidden=32, layers=2, heads=2, audio_dim=8, frame_condition=True).eval()
    x = _inputs()
    t = torch.tensor([0.7, 0.3])
    plain = m(x["latents"], t, x["motion"], x["audio"])
    given = m(x["latents"], t, x["motion"], x["audio"], cond_frame=torch.randn(2, 4, 8, 8))
    torch.testing.assert_close(given.sample, plain.sample, **TOL)


@torch.no_grad()
def test_frame_condition_reaches_every_frame_and_keeps_cache_exact(conditioned):
    x = _inputs()
    t = torch.tensor([0.9, 0.4])
    cond = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(3))
    cache = conditioned.encode_reference(x["ref"], x["ref_motion"])
    out = conditioned(x["latents"], t, x["motion"], x["audio"], reference=cache, cond_frame=cond)
    # the uncached joint model (reference segment without condition) gives the same velocity
    ref = conditioned.forward_uncached(x["latents"], t, x["motion"], x["audio"], None, [(x["ref"], x["ref_motion"])],
                                       attention="dense", cond_frame=cond)
    torch.testing.assert_close(out.sample, ref.sample, **TOL)
    # a different condition changes the output in every generated frame (it is broadcast over time) ...
    other = conditioned(x["latents"], t, x["motion"], x["audio"], reference=cache, cond_frame=-cond)
    per_frame = (other.sample - out.sample).abs().amax(dim=(1, 3, 4))  # (B, T)
    assert (per_frame > 1e-4).all()
    # ... and is not the same as giving none (the presence flag)
    none = conditioned(x["latents"], t, x["motion"], x["audio"], reference=cache)
    assert (none.sample - out.sample).abs().max() > 1e-4
    # the cached reference itself does not depend on the condition
    again = conditioned.encode_reference(x["ref"], x["ref_motion"])
    for a, b in zip(cache.keys, again.keys):
        torch.testing.assert_close(a, b)


def test_frame_condition_is_ignored_by_models_built_without_it(model):
    x = _inputs()
    t = torch.tensor([0.6, 0.6])
    with torch.no_grad():
        a = model(x["latents"], t, x["motion"], x["audio"])
        b = model(x["latents"], t, x["motion"], x["audio"], cond_frame=torch.randn(2, 4, 8, 8))
    torch.testing.assert_close(a.sample, b.sample, **TOL)


def test_prior_velocity_is_the_posterior_mean_velocity():
    """Known answer: for x0 ~ N(cond, s²) the exact E[v | x_t] (Monte Carlo: regress v = noise - x0 on x_t over many
    draws at one pixel) matches prior_velocity at every t, including the ends (t = 0: -x_t, t = 1: x_t - cond)."""
    s2 = 0.05
    m = AvatarTransformer3DModel(in_channels=1, hidden=32, layers=1, heads=2, audio_dim=8, patch=1, frame_condition=True,
                                 condition_prior_var=s2)
    g = torch.Generator().manual_seed(0)
    cond = torch.tensor(0.7)
    n = 400_000
    for t in (0.0, 0.2, 0.5, 0.8, 1.0):
        x0 = cond + s2**0.5 * torch.randn(n, generator=g, dtype=torch.float64)
        noise = torch.randn(n, generator=g, dtype=torch.float64)
        xt, v = (1 - t) * x0 + t * noise, noise - x0
        # E[v | x_t] is affine in x_t for Gaussians: least squares recovers it
        A = torch.stack([xt, torch.ones_like(xt)], 1)
        coef = torch.linalg.lstsq(A, v[:, None]).solution[:, 0]
        probe = torch.tensor([-1.0, 0.3, 1.5], dtype=torch.float64)
        expected = coef[0] * probe + coef[1]
        got = m.prior_velocity(probe.float().reshape(3, 1, 1, 1, 1), torch.full((3,), t),
                               cond.expand(3).reshape(3, 1, 1, 1)).flatten()
        torch.testing.assert_close(got.double(), expected, atol=0.02, rtol=0.02)
    ends = m.prior_velocity(torch.tensor([2.0]).reshape(1, 1, 1, 1, 1), torch.tensor([1.0]), cond.reshape(1, 1, 1, 1))
    torch.testing.assert_close(ends.flatten(), torch.tensor([2.0 - 0.7]))


@torch.no_grad()
def test_condition_prior_adds_to_the_network_and_keeps_cache_exact(conditioned):
    """With a prior the velocity is the network's plus prior_velocity, cached == uncached, and without a condition
    frame (T2V batches) or without a prior variance (older checkpoints) nothing is added."""
    x = _inputs()
    t = torch.tensor([0.9, 0.4])
    cond = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(3))
    cache = conditioned.encode_reference(x["ref"], x["ref_motion"])
    plain = conditioned(x["latents"], t, x["motion"], x["audio"], reference=cache, cond_frame=cond)
    with_prior = AvatarTransformer3DModel(in_channels=4, hidden=32, layers=2, heads=2, audio_dim=8, frame_condition=True,
                                          condition_prior_var=0.05).eval()
    with_prior.load_state_dict(conditioned.state_dict())
    out = with_prior(x["latents"], t, x["motion"], x["audio"], reference=with_prior.encode_reference(x["ref"], x["ref_motion"]),
                     cond_frame=cond)
    torch.testing.assert_close(out.sample - plain.sample, with_prior.prior_velocity(x["latents"], t, cond), **TOL)
    torch.testing.assert_close(out.motion, plain.motion, **TOL)  # the motion stream has no prior
    joint = with_prior.forward_uncached(x["latents"], t, x["motion"], x["audio"], None, [(x["ref"], x["ref_motion"])],
                                        attention="dense", cond_frame=cond)
    torch.testing.assert_close(out.sample, joint.sample, **TOL)
    no_cond = with_prior(x["latents"], t, x["motion"], x["audio"])
    torch.testing.assert_close(no_cond.sample, conditioned(x["latents"], t, x["motion"], x["audio"]).sample, **TOL)


@torch.no_grad()
def test_prior_mean_per_frame_replaces_the_condition_frame(conditioned):
    """A per-frame prior mean (models/motion_plan.py) moves only the prior: the same mean on every frame equals the
    condition frame itself; another mean changes the velocity by exactly the prior's difference, cached == uncached."""
    x = _inputs()
    t = torch.tensor([0.9, 0.4])
    g = torch.Generator().manual_seed(4)
    cond = torch.randn(2, 4, 8, 8, generator=g)
    m = AvatarTransformer3DModel(in_channels=4, hidden=32, layers=2, heads=2, audio_dim=8, frame_condition=True,
                                 condition_prior_var=0.05).eval()
    m.load_state_dict(conditioned.state_dict())
    cache = m.encode_reference(x["ref"], x["ref_motion"])
    T = x["latents"].shape[2]
    base = m(x["latents"], t, x["motion"], x["audio"], reference=cache, cond_frame=cond)
    same = m(x["latents"], t, x["motion"], x["audio"], reference=cache, cond_frame=cond,
             prior_mean=cond[:, :, None].expand(-1, -1, T, -1, -1))
    torch.testing.assert_close(same.sample, base.sample, **TOL)
    mean = cond[:, :, None] + torch.randn(2, 4, T, 8, 8, generator=g)
    moved = m(x["latents"], t, x["motion"], x["audio"], reference=cache, cond_frame=cond, prior_mean=mean)
    torch.testing.assert_close(moved.sample - base.sample,
                               m.prior_velocity(x["latents"], t, mean) - m.prior_velocity(x["latents"], t, cond), **TOL)
    joint = m.forward_uncached(x["latents"], t, x["motion"], x["audio"], None, [(x["ref"], x["ref_motion"])],
                               attention="dense", cond_frame=cond, prior_mean=mean)
    torch.testing.assert_close(moved.sample, joint.sample, **TOL)


@torch.no_grad()
@pytest.mark.parametrize("attention", ["dense", "sparse"])
def test_motion_context_segment_cached_equals_uncached(model, attention):
    """The reference's motion history enters as a motion-only segment: cached == the uncached joint model with the
    segment (None latents), it changes the output, and the video reference's cache part does not depend on it."""
    x = _inputs()
    t = torch.tensor([0.8, 0.3])
    ctx = torch.randn(1, 11, 16, generator=torch.Generator().manual_seed(5))
    cache = model.encode_reference(x["ref"], x["ref_motion"], motion_context=ctx)
    assert cache.n_segments == 2
    out = model(x["latents"], t, x["motion"], x["audio"], reference=cache)
    joint = model.forward_uncached(x["latents"], t, x["motion"], x["audio"], None,
                                   [(x["ref"], x["ref_motion"]), (None, ctx)], attention=attention)
    torch.testing.assert_close(out.sample, joint.sample, **TOL)
    torch.testing.assert_close(out.motion, joint.motion, **TOL)
    without = model(x["latents"], t, x["motion"], x["audio"], reference=model.encode_reference(x["ref"], x["ref_motion"]))
    assert (without.motion - out.motion).abs().max() > 1e-4
    other = model(x["latents"], t, x["motion"], x["audio"],
                  reference=model.encode_reference(x["ref"], x["ref_motion"], motion_context=-ctx))
    assert (other.sample - out.sample).abs().max() > 1e-4
    plain = model.encode_reference(x["ref"], x["ref_motion"])
    n = plain.keys[0].shape[2]
    for a, b in zip(plain.keys, cache.keys):  # segment 1 sees segment 0, not the other way round
        torch.testing.assert_close(a, b[:, :, :n], **TOL)
