"""Datasets and the curriculum stages on a miniature corpus: windows/caches/pairs (fast), and t2v → a2v → sft
(+ ablation, proof, LoRA) end to end with a 2-layer DiT (slow)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from _train_corpus import make_corpus, tiny_vae

from avatarv.data.datasets import PairBatches, WindowBatches, build_windows, load_pairs, load_training_clips


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return make_corpus(tmp_path_factory.mktemp("corpus"), identities=3, scenes=2, frames=17)


def test_windows_match_the_vae_and_cache(corpus, tmp_path):
    vae = tiny_vae()
    clips = load_training_clips(corpus)
    ws = build_windows(clips, vae, size=32, frames=9, stride=8, image_sizes=(16,), cache_dir=tmp_path, progress=False)
    assert len(ws) == 12 and ws.latents.shape == (12, 8, 3, 8, 8) and ws.mel.shape == (12, 80, 36)
    # window 1 of the first clip starts at frame 8: its latents equal encoding those frames directly
    x = ws.frames[1:2].permute(0, 4, 1, 2, 3).float() / 127.5 - 1
    torch.testing.assert_close(ws.latents[1:2], vae.encode(x), rtol=1e-4, atol=1e-4)
    assert ws.meta.loc[1, "start"] == 8 and ws.meta.loc[1, "clip_id"] == "id000_s0_c0"
    # causal VAE: the image latent is the first latent frame of a 1-frame encode at 16 px
    first = torch.nn.functional.interpolate(x[:, :, 0], size=(16, 16), mode="area")[:, :, None]
    torch.testing.assert_close(ws.image_latents[16][1:2], vae.encode(first), rtol=1e-4, atol=1e-4)
    # mouth opening ground truth follows the manifest
    np.testing.assert_allclose(ws.motion[1, :, 5].numpy(), np.asarray(clips.loc[0, "mouth_open"])[8:17], atol=1e-6)
    again = build_windows(clips, vae, size=32, frames=9, stride=8, image_sizes=(16,), cache_dir=tmp_path, progress=False)
    assert torch.equal(again.latents, ws.latents) and len(list(tmp_path.glob("windows_*.pt"))) == 1


def test_batches_are_deterministic_sharded_and_cross_scene(corpus, tmp_path):
    ws = build_windows(load_training_clips(corpus), tiny_vae(), size=32, frames=9, stride=8, cache_dir=None,
                       progress=False)
    wb = WindowBatches(ws, ws.indices("train"), 4, seed=1, latent_frames=2)
    a, b = wb.batch(3, 0, 1), wb.batch(3, 0, 1)
    assert torch.equal(a["window"], b["window"]) and a["latents"].shape[2] == 2 and a["motion"].shape[1] == 5
    r0, r1 = wb.batch(3, 0, 2), wb.batch(3, 1, 2)
    assert sorted(torch.cat([r0["window"], r1["window"]]).tolist()) == sorted(a["window"].tolist())
    assert set(ws.meta.loc[ws.indices("train"), "identity"]) == {"id000", "id001"}
    pairs = load_pairs(None, ws)
    pb = PairBatches(ws, pairs, 4, seed=0)
    batch = pb.batch(0, 0, 1)
    ref_meta, tgt_meta = ws.meta.loc[batch["ref_window"].numpy()], ws.meta.loc[batch["window"].numpy()]
    assert (ref_meta["identity"].values == tgt_meta["identity"].values).all()
    assert (ref_meta["scene"].values != tgt_meta["scene"].values).all()
    assert set(tgt_meta["split"]) == {"train"}


def test_curation_table_filters_clips(corpus, tmp_path):
    import pandas as pd

    man = pd.read_parquet(corpus / "manifest.parquet")
    pd.DataFrame({"clip_id": man["clip_id"], "kept": [i != 0 for i in range(len(man))]}).to_parquet(tmp_path / "clips.parquet")
    assert "id000_s0_c0" not in set(load_training_clips(corpus, tmp_path)["clip_id"])


@pytest.mark.slow
def test_curriculum_end_to_end(corpus, tmp_path):
    from avatarv.config import load_config
    from avatarv.inference.pipeline import load_pipeline
    from avatarv.train import a2v, distill, lora, proof, sft, t2v
    from avatarv.train.stage import StagePaths

    tiny_vae().save_pretrained(tmp_path / "vae")
    cfg = load_config("tiny")
    cfg.dit.hidden, cfg.dit.layers, cfg.dit.heads, cfg.sampling.steps = 32, 2, 2, 3
    for st in (cfg.train.t2v, cfg.train.a2v, cfg.train.sft, cfg.train.lora):
        st.batch_size, st.checkpoint_every, st.eval_pairs = 2, 4, 2
    # the sync judge/grader of a2v/sft train on these 17-frame clips: shifts of ±2 need 14 frames
    cfg.eval.sync_expert_max_shift, cfg.eval.sync_expert_steps, cfg.eval.sync_expert_batch = 2, 3, 4
    paths = StagePaths(corpus=corpus, curated=tmp_path / "none", vae=tmp_path / "vae", runs=tmp_path / "runs")
    fake_text = lambda caps: torch.stack([torch.randn(4, 384, generator=torch.Generator().manual_seed(len(c))) for c in caps])
    o1 = t2v.run(cfg, paths, steps=6, text_encode=fake_text, progress=False)
    assert [p["end_step"] for p in o1.metrics["phases"]] == [2, 4, 6]
    o2 = a2v.run(cfg, paths, steps=4, progress=False)
    assert (paths.final("a2v") / "transformer" / "config.json").exists() and np.isfinite(o2.metrics["audio_gain"])
    outs = sft.run_ablations(cfg, paths, steps=4, progress=False, variants=["full", "no_motion"])
    assert outs["full"].history[-1]["motion"] >= 0 and "motion" not in outs["no_motion"].history[-1]
    assert {"face", "lip", "identity"} <= set(outs["full"].history[-1])
    vae, ws, _, _ = sft.prepare(cfg, paths, progress=False)
    table, frames, _, _ = proof.run_proof(cfg, paths, outs, vae, ws, progress=False)
    assert set(table["method"]) == {"full", "no_motion", "static_reference", "ground_truth"}
    assert table.set_index("method").at["static_reference", "lip_sync"] == 0.0
    assert frames["full"].shape == frames["ground_truth"].shape
    lo = lora.run(cfg, paths, identity="id002", steps=3, progress=False)
    assert lo.metrics["trainable_params"] > 0 and (lo.final_dir / "adapter_model.pt").exists()
    d = cfg.distill
    d.batch_size, d.cfg_steps, d.ode_pairs, d.warm_steps, d.dmd_steps, d.checkpoint_every, d.eval_pairs = 2, 3, 2, 2, 2, 2, 2
    d.curve_steps = [1, 2]
    out = distill.run(cfg, paths, progress=False)
    assert out["dmd"].metrics["nfe_ratio"] == cfg.sampling.steps * 3 / d.student_steps and [h["phase"] for h in out["dmd"].history] == ["warm"] * 2 + ["dmd"] * 2
    student = load_pipeline(paths.final("distill"))
    assert student.config.steps == 2 and student.transformer.config.guidance_embed
    curve = distill.steps_quality_curve(out, cfg, paths)
    assert [r["system"] for r in curve] == ["teacher", "distill:cfg", "distill:dmd", "distill:dmd"]
    assert curve[0]["mae_to_teacher"] == 0.0 and all(np.isfinite(r["sharpness"]) for r in curve)


def test_cli_lora_needs_an_identity(capsys):
    from avatarv.cli import main

    assert main(["train", "--stage", "lora"]) == 2
    assert "--identity" in capsys.readouterr().err


def test_clip_start_frame_is_each_windows_clip_first_window():
    """The frame condition of a training window is its clip's start frame (what inference conditions every chunk on),
    not the window's own first frame."""
    import pandas as pd

    from avatarv.data.datasets import WindowSet, window_batch

    meta = pd.DataFrame({"clip_id": ["a", "a", "b", "a", "b"], "start": [0, 8, 4, 16, 0],
                         "identity": ["x"] * 5, "scene": [0] * 5, "split": ["train"] * 5, "caption": [""] * 5})
    n = len(meta)
    lat = torch.arange(n, dtype=torch.float32).view(n, 1, 1, 1, 1).expand(n, 2, 3, 2, 2).clone()
    lat[:, :, 1:] += 100  # only latent frame 0 carries the window's id
    motion = torch.arange(n, dtype=torch.float32).view(n, 1, 1).expand(n, 9, 16).clone()
    motion[:, 1:] += 100  # only video frame 0 carries the window's id
    ws = WindowSet(latents=lat, frames=torch.zeros(n, 9, 4, 4, 3, dtype=torch.uint8), motion=motion,
                   mel=torch.zeros(n, 80, 36), face_box=torch.zeros(n, 9, 4), mouth_box=torch.zeros(n, 9, 4),
                   identity=torch.zeros(n, dtype=torch.long), meta=meta, identities=["x"])
    assert ws.clip_start.tolist() == [0, 0, 4, 0, 4]
    b = window_batch(ws, [3, 2, 1], td=1)
    assert b["start_latent"].shape == (3, 2, 2, 2)
    assert b["start_latent"][:, 0, 0, 0].tolist() == [0.0, 4.0, 0.0]
    assert b["start_motion"].shape == (3, 16) and b["start_motion"][:, 0].tolist() == [0.0, 4.0, 0.0]


def test_condition_prior_variance_and_switch():
    """s² is the mean squared difference of each window's latents to its clip's start frame (brute force), and
    ensure_condition_prior sets it once, only for frame-conditioned generators with params.yaml's switch on."""
    import dataclasses

    import pandas as pd

    from avatarv.config import load_config
    from avatarv.data.datasets import WindowSet
    from avatarv.train.generator import AvatarGenerator
    from avatarv.train.stage import condition_prior_variance, ensure_condition_prior

    meta = pd.DataFrame({"clip_id": ["a", "a", "b", "b"], "start": [0, 8, 0, 8], "identity": ["x"] * 4,
                         "scene": [0] * 4, "split": ["train"] * 4, "caption": [""] * 4})
    lat = torch.randn(4, 2, 3, 2, 2, generator=torch.Generator().manual_seed(0))
    ws = WindowSet(latents=lat, frames=torch.zeros(4, 3, 4, 4, 3, dtype=torch.uint8), motion=torch.zeros(4, 3, 16),
                   mel=torch.zeros(4, 80, 12), face_box=torch.zeros(4, 3, 4), mouth_box=torch.zeros(4, 3, 4),
                   identity=torch.zeros(4, dtype=torch.long), meta=meta, identities=["x"])
    brute = sum(float(((lat[i] - lat[s][:, :1]) ** 2).sum()) for i, s in [(0, 0), (1, 0), (2, 2), (3, 2)]) / lat.numel()
    assert abs(condition_prior_variance(ws, [0, 1, 2, 3]) - brute) < 1e-6
    assert abs(condition_prior_variance(ws, [1]) - float(((lat[1] - lat[0][:, :1]) ** 2).mean())) < 1e-6

    cfg = load_config("tiny")
    gen = AvatarGenerator.from_config(cfg, 2, 1)
    assert gen.transformer.config.frame_condition and gen.transformer.config.condition_prior_var is None
    ensure_condition_prior(dataclasses.replace(cfg, conditions=dataclasses.replace(cfg.conditions, condition_prior=False)), gen, ws, [0])
    assert gen.transformer.config.condition_prior_var is None  # switched off in params.yaml: untouched
    ensure_condition_prior(cfg, gen, ws, [0, 1, 2, 3])
    assert abs(gen.transformer.config.condition_prior_var - brute) < 1e-5
    ensure_condition_prior(cfg, gen, ws, [1])  # an inherited value is kept
    assert abs(gen.transformer.config.condition_prior_var - brute) < 1e-5


def test_reference_motion_history_is_its_whole_clip_in_time_order():
    """pair_batch's motion context is the REFERENCE clip's motion, windows concatenated by start time (the rows are
    shuffled here), cut to the shortest clip in the batch; the target clip's motion never enters."""
    import pandas as pd

    from avatarv.data.datasets import WindowSet, pair_batch

    meta = pd.DataFrame({"clip_id": ["r", "t", "r", "r", "t", "q"], "start": [6, 0, 0, 3, 3, 0],
                         "identity": ["x"] * 6, "scene": [0, 1, 0, 0, 1, 2], "split": ["train"] * 6, "caption": [""] * 6})
    n, T = len(meta), 3
    motion = torch.zeros(n, T, 16)
    for i, (clip, start) in enumerate(zip(meta["clip_id"], meta["start"])):
        motion[i, :, 0] = torch.arange(start, start + T, dtype=torch.float32)  # channel 0 = time within the clip
        motion[i, :, 1] = {"r": 1.0, "t": 2.0, "q": 3.0}[clip]  # channel 1 = which clip
    ws = WindowSet(latents=torch.zeros(n, 2, T, 2, 2), frames=torch.zeros(n, T, 4, 4, 3, dtype=torch.uint8),
                   motion=motion, mel=torch.zeros(n, 80, 4 * T), face_box=torch.zeros(n, T, 4),
                   mouth_box=torch.zeros(n, T, 4), identity=torch.zeros(n, dtype=torch.long), meta=meta, identities=["x"])
    b = pair_batch(ws, [3], [1], td=1, context_frames=100)
    ctx = b["ref_motion_context"]
    assert ctx.shape == (1, 9, 16)
    assert ctx[0, :, 0].tolist() == list(range(9)) and (ctx[0, :, 1] == 1.0).all()
    short = pair_batch(ws, [0, 5], [1, 4], td=1, context_frames=100)["ref_motion_context"]
    assert short.shape == (2, 3, 16) and short[1, :, 1].eq(3.0).all()  # clip q has one window: all cut to 3 frames
    assert "ref_motion_context" not in pair_batch(ws, [0], [1], td=1)
