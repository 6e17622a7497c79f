"""AvatarVideoVAE: causal shapes, causality, scaling, save/load round trip, determinism, a tiny overfit."""

from __future__ import annotations

import pytest
import torch

from avatarv.models.vae import AvatarVideoVAE, load_vae


def _tiny(**kw) -> AvatarVideoVAE:
    torch.manual_seed(0)
    return AvatarVideoVAE(**{"latent_channels": 4, "base_channels": 8, **kw}).eval()


def _clip(t=9, size=32, seed=1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(2, 3, t, size, size, generator=g) * 2 - 1


@pytest.mark.parametrize("frames,latent_frames", [(1, 1), (5, 2), (9, 3), (10, 3), (12, 3), (13, 4)])
def test_causal_time_compression_shapes(frames, latent_frames):
    vae = _tiny()
    with torch.no_grad():
        z = vae.encode(_clip(frames))
        assert z.shape == (2, 4, latent_frames, 8, 8)
        assert vae.decode(z).shape == (2, 3, 1 + 4 * (latent_frames - 1), 32, 32)


def test_spatial_8x_profile_shapes():
    vae = _tiny(spatial_downsample=8, latent_channels=16)
    with torch.no_grad():
        z = vae.encode(_clip(17, 64))
    assert z.shape == (2, 16, 5, 8, 8)


def test_encoder_and_decoder_are_causal():
    """Latent frame j depends only on video frames <= 4j (and decoded frames on latents up to theirs)."""
    vae = _tiny()
    x = _clip(9)
    with torch.no_grad():
        z = vae.encode(x)
        assert torch.allclose(vae.encode(x[:, :, :5]), z[:, :, :2], atol=1e-5)
        x2 = x.clone()
        x2[:, :, 5:] = 0.0  # changing the future must not change the past latents
        assert torch.allclose(vae.encode(x2)[:, :, :2], z[:, :, :2], atol=1e-5)
        assert not torch.allclose(vae.encode(x2)[:, :, 2], z[:, :, 2], atol=1e-5)
        assert torch.allclose(vae.decode(z[:, :, :2]), vae.decode(z)[:, :, :5], atol=1e-5)


def test_scaling_factor_scales_latents_and_is_undone_by_decode():
    vae = _tiny()
    x = _clip(5)
    with torch.no_grad():
        z1, d1 = vae.encode(x), vae.decode(vae.encode(x))
        vae.register_to_config(scaling_factor=2.5)
        z2, d2 = vae.encode(x), vae.decode(vae.encode(x))
    assert torch.allclose(z2, 2.5 * z1, atol=1e-5)
    assert torch.allclose(d1, d2, atol=1e-5)
    assert d1.abs().max() <= 1.0


def test_save_load_round_trip(tmp_path):
    vae = _tiny()
    vae.register_to_config(scaling_factor=0.73)
    vae.save_pretrained(tmp_path / "vae")
    back = load_vae(tmp_path / "vae")
    assert back.config.scaling_factor == pytest.approx(0.73)
    x = _clip(5)
    with torch.no_grad():
        assert torch.equal(vae.encode(x), back.encode(x))
        assert torch.equal(vae.decode(vae.encode(x)), back.decode(back.encode(x)))


def test_load_vae_missing_folder_names_the_path(tmp_path):
    with pytest.raises(ValueError, match=r"no config\.json"):
        load_vae(tmp_path / "nothing")


def test_deterministic_given_seed_and_sampling_generator():
    a, b = _tiny(), _tiny()
    x = _clip(5)
    with torch.no_grad():
        assert torch.equal(a.encode(x), b.encode(x))
        za = a.encode(x, sample=True, generator=torch.Generator().manual_seed(3))
        zb = b.encode(x, sample=True, generator=torch.Generator().manual_seed(3))
    assert torch.equal(za, zb)


def test_bad_shapes_raise_value_error():
    vae = _tiny()
    with pytest.raises(ValueError, match="multiples of 4"):
        vae.encode(torch.zeros(1, 3, 5, 30, 32))
    with pytest.raises(ValueError, match=r"\(B, 3, T, H, W\)"):
        vae.encode(torch.zeros(1, 5, 32, 32))
    with pytest.raises(ValueError, match="expected"):
        vae.decode(torch.zeros(1, 3, 2, 8, 8))


@pytest.mark.parametrize("norm", ["group", "rms"])
def test_overfits_one_clip_in_50_steps(norm):
    """A smooth moving blob: 50 Adam steps must cut the reconstruction error far below its value at init."""
    vae = _tiny(norm=norm).train()
    t = torch.arange(5, dtype=torch.float32)[:, None, None]
    yy, xx = torch.meshgrid(torch.arange(32.0), torch.arange(32.0), indexing="ij")
    blob = torch.exp(-((xx - 10 - 2 * t) ** 2 + (yy - 16) ** 2) / 40.0)
    x = torch.stack([blob, 1 - blob, 0.5 * blob]).unsqueeze(0) * 2 - 1  # (1,3,5,32,32)
    opt = torch.optim.Adam(vae.parameters(), lr=3e-3)

    def err():
        with torch.no_grad():
            return float(((vae.decode(vae.encode(x)) - x) ** 2).mean())

    before = err()
    for _ in range(50):
        recon, _, _ = vae(x, sample=False)
        loss = (recon - x).abs().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = err()
    assert after < 0.1 * before
