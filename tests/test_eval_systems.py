"""Benchmark systems: real video / static frame rows speak the same trimmed audio; checkpoints are found under
runs/ (ablations named stage:variant) and a saved AvatarVPipeline generates a case end to end."""

from __future__ import annotations

import numpy as np
import pytest
from _eval_fixtures import make_clip

from avatarv.eval import systems
from avatarv.media import probe, read_video


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    d = tmp_path_factory.mktemp("corpus")
    (d / "clips").mkdir()
    make_clip(d / "clips" / "id1_s0_c0.mp4", 0, 0, scene=0, seconds=2.0, size=64)
    make_clip(d / "clips" / "id1_s1_c0.mp4", 0, 1, scene=1, seconds=2.0, size=64)
    case = {"case_id": "id1_r0_s1c0", "ref_path": "clips/id1_s0_c0.mp4", "target_path": "clips/id1_s1_c0.mp4"}
    return d, [case]


def test_real_and_static_rows_use_the_same_trimmed_target_audio(corpus, tmp_path):
    d, cases = corpus
    real = read_video(systems.real_video(cases, d, tmp_path / "real", seconds=1.2) / "id1_r0_s1c0.mp4", need_audio=True)
    static = read_video(systems.static_frame(cases, d, tmp_path / "static", seconds=1.2) / "id1_r0_s1c0.mp4", need_audio=True)
    assert len(real.frames) == 30 and abs(len(static.frames) - 30) <= 1
    assert abs(len(real.audio) - len(static.audio)) <= 1024 and abs(len(real.audio) / real.sample_rate - 1.2) < 0.1
    assert np.all(static.frames == static.frames[:1])  # nothing moves
    ref0 = read_video(d / "clips" / "id1_s0_c0.mp4", max_frames=1).frames[0]
    assert np.abs(static.frames[0].astype(int) - ref0).mean() < 3  # it is the reference's first frame


def test_find_checkpoints_orders_stages_and_names_ablations(tmp_path):
    """Saved pipelines (model_index.json: what every stage saves) count; other folders, bare components too, do not."""
    for rel in ("sft/final", "t2v/final", "a2v/final", "sft/ablations/no_lip/final", "vae", "eval/x/final", "lora/final",
                "old/final", "distill/final", "distill/ablations/cfg/final", "rlhf/ablations/dpo/final", "rlhf/final"):
        (tmp_path / rel).mkdir(parents=True)
        if rel.endswith("final") and rel not in ("lora/final", "old/final"):  # lora/final stays empty
            (tmp_path / rel / "model_index.json").write_text("{}")
    for part in ("transformer", "audio_encoder"):  # components without a pipeline index are not a checkpoint
        (tmp_path / "old/final" / part).mkdir()
        (tmp_path / "old/final" / part / "config.json").write_text("{}")
    found = systems.find_checkpoints(tmp_path)
    assert list(found) == ["t2v", "a2v", "sft", "sft:no_lip", "distill:dmd", "distill:cfg", "rlhf:grpo", "rlhf:dpo"]
    assert found["distill:dmd"] == tmp_path / "distill/final"  # stage 4's final model is its DMD student
    assert found["rlhf:grpo"] == tmp_path / "rlhf/final"  # stage 5's final model is its GRPO model
    assert found["rlhf:dpo"] == tmp_path / "rlhf/ablations/dpo/final"
    assert [systems.row_kind(n) for n in found] == (["trained stage"] * 3 + ["ablation"] + ["distilled student"] * 2
                                                    + ["RLHF-tuned"] * 2)


def test_generated_row_from_a_saved_pipeline(corpus, tmp_path, tiny_cfg):
    import torch

    from avatarv.inference.pipeline import pipeline_from_config
    from avatarv.models.audio_encoder import AudioEncoder
    from avatarv.models.dit import transformer_from_config
    from avatarv.models.vae import AvatarVideoVAE

    torch.manual_seed(0)
    v = tiny_cfg.vae
    vae = AvatarVideoVAE(latent_channels=v.latent_channels, base_channels=8, spatial_downsample=v.spatial_downsample)
    dit = transformer_from_config(tiny_cfg.dit, v.latent_channels, sample_size=32)
    pipe = pipeline_from_config(tiny_cfg, vae.eval(), dit.eval(), AudioEncoder(audio_dim=tiny_cfg.dit.audio_dim).eval())
    pipe.save_pretrained(tmp_path / "runs" / "sft" / "final")
    ckpt = systems.find_checkpoints(tmp_path / "runs")["sft"]
    d, cases = corpus
    out = systems.generated(cases, d, tmp_path / "gen", ckpt, seed=0, steps=2, seconds=1.2)
    info = probe(out / "id1_r0_s1c0.mp4")
    assert info.has_audio and abs(info.n_frames - 30) <= 1 and info.width == 32
