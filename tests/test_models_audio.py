"""Audio features and encoders: log-mel known answers, librosa equivalence, encoder shapes, local backbone loading."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from avatarv.models.audio_encoder import AudioEncoder, load_pretrained_audio_backbone
from avatarv.models.audio_features import log_mel


def _tone(freq: float, seconds: float = 1.0, sr: int = 16000) -> np.ndarray:
    return (0.5 * np.sin(2 * np.pi * freq * np.arange(int(seconds * sr)) / sr)).astype(np.float32)


def test_log_mel_shape_is_100_frames_per_second():
    assert log_mel(_tone(440), 16000).shape == (80, 100)
    assert log_mel(_tone(440, 0.48, 8000), 8000).shape == (80, 48)  # 12 video frames x 4
    assert log_mel(np.zeros(50, np.float32), 16000).shape == (80, 0)


@pytest.mark.parametrize("k", [12, 40, 70])
def test_pure_tone_peaks_in_its_mel_bin(k):
    """Independent answer: a tone at the centre of filter k (HTK mel, 80 filters on 0..8 kHz) peaks in bin k,
    and a tone between two filters' centres never peaks farther than one bin away."""
    mel = lambda f: 2595.0 * np.log10(1.0 + f / 700.0)
    hz = lambda m: 700.0 * (10 ** (m / 2595.0) - 1.0)
    centres = hz(np.linspace(0.0, mel(8000.0), 82)[1:-1])
    assert int(log_mel(_tone(centres[k]), 16000)[:, 5:-5].mean(1).argmax()) == k
    between = (centres[k] + centres[k + 1]) / 2
    assert int(log_mel(_tone(between), 16000)[:, 5:-5].mean(1).argmax()) in (k, k + 1)


def test_log_mel_matches_librosa():
    librosa = pytest.importorskip("librosa")
    rng = np.random.default_rng(0)
    y = (rng.standard_normal(16000) * 0.1 + _tone(700)).astype(np.float32)
    ours = log_mel(y, 16000)
    ref = librosa.feature.melspectrogram(y=y, sr=16000, n_fft=512, hop_length=160, win_length=400, window="hann",
                                         center=True, pad_mode="reflect", power=2.0, n_mels=80, htk=True,
                                         norm="slaney")[:, : ours.shape[1]]
    np.testing.assert_allclose(ours, np.log(np.maximum(ref, 1e-5)), atol=1e-3)


def test_log_mel_is_deterministic_and_floors_silence():
    y = _tone(500)
    assert np.array_equal(log_mel(y, 16000), log_mel(y.copy(), 16000))
    assert np.allclose(log_mel(np.zeros(1600, np.float32), 16000), np.log(1e-5))
    with pytest.raises(ValueError, match="mono"):
        log_mel(np.zeros((2, 1600), np.float32), 16000)


def _encoder():
    torch.manual_seed(0)
    return AudioEncoder(audio_dim=32, layers=1, heads=2).eval()


def test_audio_encoder_gives_one_feature_per_video_frame():
    enc = _encoder()
    with torch.no_grad():
        assert enc(torch.randn(2, 80, 100)).shape == (2, 25, 32)
        assert enc(torch.randn(2, 80, 103)).shape == (2, 25, 32)
    with pytest.raises(ValueError, match="expected mel"):
        enc(torch.randn(2, 40, 100))


def test_audio_encoder_round_trip_and_determinism(tmp_path):
    enc = _encoder()
    mel = torch.from_numpy(log_mel(_tone(300), 16000))[None]
    enc.save_pretrained(tmp_path / "enc")
    back = AudioEncoder.from_pretrained(tmp_path / "enc").eval()
    with torch.no_grad():
        out = enc(mel)
        assert torch.equal(out, back(mel))
        assert torch.equal(out, _encoder()(mel))
        # features of a frame depend on its own audio: changing the second half changes later frames most
        mel2 = mel.clone()
        mel2[..., 50:] = 0
        diff = (enc(mel2) - out).abs().mean(-1)[0]
    assert diff[13:].mean() > diff[:12].mean()


def test_load_local_wav2vec2_backbone(tmp_path):
    from transformers import Wav2Vec2Config, Wav2Vec2Model

    torch.manual_seed(0)
    cfg = Wav2Vec2Config(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                         conv_dim=(16, 16), conv_stride=(5, 64), conv_kernel=(10, 64), num_conv_pos_embeddings=16,
                         num_conv_pos_embedding_groups=2, feat_extract_norm="group", do_stable_layer_norm=False)
    ref = Wav2Vec2Model(cfg).eval()
    ref.save_pretrained(tmp_path / "w2v")
    backbone = load_pretrained_audio_backbone(tmp_path / "w2v")
    x = torch.from_numpy(_tone(220))[None]
    with torch.no_grad():
        assert torch.allclose(backbone(x), ref(x).last_hidden_state)
        feats = backbone.features_per_video_frame(_tone(220, 1.0, 8000), 8000, n_frames=25)
    assert feats.shape == (1, 25, 32) and torch.isfinite(feats).all()
    assert backbone.hidden_size == 32
    assert not any(p.requires_grad for p in backbone.parameters())


def test_load_backbone_missing_folder(tmp_path):
    with pytest.raises(ValueError, match=r"config\.json"):
        load_pretrained_audio_backbone(tmp_path)
