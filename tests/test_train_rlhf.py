"""Stage 5, RLHF (train/rlhf.py): GRPO's advantages and loss, the DPO loss against trl's formula, the SDE sampler's
marginals and log-likelihood bookkeeping, a toy 1-D flow that GRPO moves toward its reward optimum, resume after a
real kill, and preference files that are refused in one line."""

from __future__ import annotations

import json
import math
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from _rlhf_toy import OPTIMUM, ToyTask, ToyVelocity, ode_mean

from avatarv.diffusion.flow import gaussian_kl, gaussian_log_prob, sde_mean, sde_std
from avatarv.errors import InputError
from avatarv.train.loop import list_checkpoints, read_history
from avatarv.train.rlhf import (
    Preferences,
    diffusion_dpo_loss,
    dpo_loop,
    dpo_sigmoid_loss,
    group_advantages,
    grpo_loop,
    grpo_loss,
    load_preferences,
    reward_hacking,
    write_preferences,
)

TESTS = Path(__file__).parent


# ------------------------------------------------------------------------------------------------ losses
def test_group_advantages_known_answer():
    r = torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0, 5.0, 5.0, 5.0])
    adv = group_advantages(r, 4, eps=0.0 + 1e-12)
    s = math.sqrt(1.25)  # population std of 1..4
    assert torch.allclose(adv[:4], torch.tensor([-1.5, -0.5, 0.5, 1.5]) / s, atol=1e-6)
    assert torch.equal(adv[4:], torch.zeros(4))  # a group of equal rewards teaches nothing
    with pytest.raises(ValueError):
        group_advantages(torch.zeros(6), 4)


def test_grpo_loss_is_the_clipped_surrogate():
    adv = torch.tensor([1.0, -1.0, 1.0])
    old = torch.zeros(3)
    new = torch.log(torch.tensor([1.5, 1.5, 1.0]))
    loss, frac = grpo_loss(new, old, adv, 0.2)
    # A>0 with ratio 1.5: clipped at 1.2 → −1.2; A<0 with ratio 1.5: unclipped −(−1)·1.5 = 1.5 (the pessimistic
    # bound); ratio 1: −1
    assert float(loss) == pytest.approx((-1.2 + 1.5 - 1.0) / 3)
    assert frac == pytest.approx(2 / 3)


def test_dpo_loss_equals_trl_and_the_paper():
    """trl 1.16's DPOTrainer computes the sigmoid loss inline (`_compute_loss`: chosen/rejected log-ratios, their
    difference, −logsigmoid(β·Δ)); here that expression and the paper's closed form on fixed log-probs."""
    g = torch.Generator().manual_seed(0)
    c, r, rc, rr = (torch.randn(16, generator=g) * 3 for _ in range(4))
    beta = 0.1
    ours = dpo_sigmoid_loss(c, r, rc, rr, beta)
    chosen_logratios, rejected_logratios = c - rc, r - rr  # trl: chosen_scores / rejected_scores (reverse_kl)
    trl_loss = -F.logsigmoid(beta * (chosen_logratios - rejected_logratios))
    assert torch.allclose(ours, trl_loss, atol=1e-7)
    paper = [-math.log(1 / (1 + math.exp(-beta * ((a - ra) - (b - rb)))))
             for a, b, ra, rb in zip(c.tolist(), r.tolist(), rc.tolist(), rr.tolist())]
    assert torch.allclose(ours.double(), torch.tensor(paper, dtype=torch.float64), atol=1e-5)
    # known answer: Δ = (−1 + 1.5) − (−2 + 1.5) = 1 → log(1 + e^−0.1)
    one = dpo_sigmoid_loss(torch.tensor(-1.0), torch.tensor(-2.0), torch.tensor(-1.5), torch.tensor(-1.5), 0.1)
    assert float(one) == pytest.approx(math.log(1 + math.exp(-0.1)))
    import inspect

    from trl import DPOTrainer

    assert "-F.logsigmoid(self.beta * delta_score)" in inspect.getsource(DPOTrainer._compute_loss)


def test_diffusion_dpo_loss():
    e = torch.tensor([0.3, 0.7])
    assert torch.allclose(diffusion_dpo_loss(e, e, e, e, 500.0), torch.full((2,), math.log(2)))  # policy = reference
    # the policy fits the chosen sample better than the reference did (and the rejected worse): loss below log 2
    better = diffusion_dpo_loss(torch.tensor(0.29), torch.tensor(0.31), torch.tensor(0.3), torch.tensor(0.3), 500.0)
    assert float(better) < math.log(2)
    # = Wallace et al.: −log σ(−β/2·[(e_w − e_w^ref) − (e_l − e_l^ref)])
    assert float(better) == pytest.approx(-math.log(1 / (1 + math.exp(250.0 * (-0.01 - 0.01)))), rel=1e-5)


def test_kl_zero_when_policy_equals_reference():
    m = torch.randn(4, 10)
    assert torch.equal(gaussian_kl(m, m.clone(), 0.3), torch.zeros(4))
    assert float(gaussian_kl(m + 0.3, m, 0.3).mean()) == pytest.approx(0.5)  # Δ²/(2σ²) with Δ = σ
    task = ToyTask(prompts=2, group_size=4)
    policy, reference = ToyVelocity(), ToyVelocity()
    with torch.no_grad():
        policy.b.fill_(0.5)
        reference.b.fill_(0.5)
    ro = task.rollout(policy, 0, torch.Generator().manual_seed(0))
    for j in range(len(ro.steps)):
        assert torch.equal(gaussian_kl(task.mean(policy, ro, j), task.mean(reference, ro, j), ro.steps[j]["std"]),
                           torch.zeros(8))


# ------------------------------------------------------------------------------------------------ the SDE sampler
def test_sde_keeps_the_flow_marginals():
    """Data = the point c: the exact velocity is (x − c)/t and x_t ~ N((1 − t)c, t²). The SDE steps with noise
    (η = 0.7) from t = 1 must reproduce that marginal at t = 0.5, where the ODE is deterministic given ε."""
    c, n, steps = 3.0, 40000, 200
    grid = np.linspace(1.0, 0.0, steps + 1)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(n, generator=gen, dtype=torch.float64)
    for i in range(steps // 2):
        t, t_next = float(grid[i]), float(grid[i + 1])
        sigma, std = sde_std(t, t_next, 0.7, float(grid[1]))
        x = sde_mean(x, (x - c) / t, t, t_next, sigma) + std * torch.randn(n, generator=gen, dtype=torch.float64)
    assert float(x.mean()) == pytest.approx(0.5 * c, abs=0.02)
    assert float(x.std()) == pytest.approx(0.5, abs=0.02)
    # σ = 0 is the Euler step
    x0, v = torch.randn(5), torch.randn(5)
    assert torch.allclose(sde_mean(x0, v, 0.6, 0.3, 0.0), x0 - 0.3 * v)


def test_sample_window_sde_trace_matches_the_velocity_it_differentiates():
    """The pipeline's SDE rollout records transitions whose means the (differentiable) `velocity` reproduces
    exactly, so GRPO's first-epoch ratio is 1; η = 0 is the ODE sampler unchanged."""
    from _inference_fixtures import tiny_pipeline, tiny_pipeline_parts

    from avatarv.inference.conditions import WindowConditions

    pipe = tiny_pipeline(tiny_pipeline_parts(), audio=False, reference=False, motion=True)
    x = torch.randn(2, 4, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    m = torch.randn(2, 3, 16, generator=torch.Generator().manual_seed(2))
    w = WindowConditions()
    ode = pipe.sample_window(x.clone(), m.clone(), w, steps=3)
    same = pipe.sample_window(x.clone(), m.clone(), w, steps=3, noise_level=0.0, trace=[])
    assert torch.equal(ode[0], same[0]) and torch.equal(ode[1], same[1])
    trace: list = []
    lat, _ = pipe.sample_window(x.clone(), m.clone(), w, steps=3, noise_level=0.7,
                                generator=torch.Generator().manual_seed(3), trace=trace)
    assert len(trace) == 2 and not torch.equal(lat, ode[0])  # every step but the last is stochastic
    for st in trace:
        with torch.no_grad():
            v_lat, v_mot = pipe.velocity(st["lat"], st["mot"], torch.full((1,), st["t"]), w)
        mean = sde_mean(st["lat"].float(), v_lat.float(), st["t"], st["t_next"], st["sigma"])
        assert torch.equal(mean, st["mean_lat"])
        assert torch.equal(sde_mean(st["mot"].float(), v_mot.float(), st["t"], st["t_next"], st["sigma"]), st["mean_mot"])
        lp = gaussian_log_prob(st["next_lat"], st["mean_lat"], st["std"])
        assert torch.isfinite(lp).all()


# ------------------------------------------------------------------------------------------------ GRPO on a toy flow
def _toy_run(run_dir, steps=30, resume=False, on_step=None, kl_beta=0.0):
    torch.manual_seed(0)
    policy, reference = ToyVelocity(), ToyVelocity()
    return grpo_loop(policy, reference, ToyTask(), run_dir, steps=steps, clip_range=0.2, kl_beta=kl_beta,
                     inner_epochs=2, lr=0.05, seed=3, checkpoint_every=5, device="cpu", resume=resume,
                     progress=False, on_step=on_step)


def test_grpo_moves_a_toy_flow_toward_the_reward_optimum(tmp_path):
    before = ode_mean(ToyVelocity())
    res = _toy_run(tmp_path / "toy")
    after = ode_mean(res.policy)
    assert abs(before) < 0.05
    assert abs(after - OPTIMUM) < 0.5 * abs(before - OPTIMUM)  # more than half-way to x = 2 in 30 steps
    rewards = [h["reward"] for h in res.history]
    assert np.mean(rewards[-5:]) > np.mean(rewards[:5])
    assert res.history[0]["kl"] == 0.0  # the first rollout's policy is the reference
    assert res.history[-1]["kl"] > 0.0
    # the KL term holds the policy nearer the reference
    held = _toy_run(tmp_path / "kl", kl_beta=50.0)
    assert abs(ode_mean(held.policy) - before) < abs(after - before)


def test_grpo_killed_process_resumes_bit_identical(tmp_path):
    """A real SIGKILL after step 12 (last checkpoint at 10) → resume replays 11–12 and ends equal to a run that was
    never interrupted."""
    full = _toy_run(tmp_path / "full", steps=15)
    script = textwrap.dedent(f"""
        import os, signal, sys
        sys.path.insert(0, {str(TESTS)!r})
        import torch
        torch.set_num_threads(1)
        from _rlhf_toy import ToyTask, ToyVelocity
        from avatarv.train.rlhf import grpo_loop
        def kill(state):
            if state.step == 12:
                os.kill(os.getpid(), signal.SIGKILL)
        torch.manual_seed(0)
        grpo_loop(ToyVelocity(), ToyVelocity(), ToyTask(), {str(tmp_path / 'killed')!r}, steps=15, clip_range=0.2,
                  kl_beta=0.0, inner_epochs=2, lr=0.05, seed=3, checkpoint_every=5, device="cpu", resume=False,
                  progress=False, on_step=kill)
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    assert [p.name for p in list_checkpoints(tmp_path / "killed")] == ["step_000005", "step_000010"]
    resumed = _toy_run(tmp_path / "killed", steps=15, resume=True)
    assert resumed.resumed_from == 10
    for a, b in zip(full.policy.parameters(), resumed.policy.parameters()):
        assert torch.equal(a, b)
    assert read_history(tmp_path / "killed" / "history.jsonl") == full.history


def test_reward_hacking_flag():
    before = {"reward_sync": 0.3, "heldout_sync": 0.25, "reward_identity": 0.9, "heldout_identity": 0.9,
              "reward_quality": -1.0, "heldout_brisque": 60.0}
    after = {"reward_sync": 0.5, "heldout_sync": 0.20, "reward_identity": 0.95, "heldout_identity": 0.92,
             "reward_quality": -1.2, "heldout_brisque": 70.0}
    out = reward_hacking([], before, after)
    assert out["sync"]["reward_hacking"]  # its reward rose, the independent judge's sync fell
    assert not out["identity"]["reward_hacking"]  # both rose
    assert not out["quality"]["reward_hacking"]  # the reward fell too: worse, but not hacking


# ------------------------------------------------------------------------------------------------ preference files
class _Windows:
    """The part of a WindowSet the preference reader needs: window ids from meta (clip_id, start)."""

    def __init__(self, n=6):
        self.meta = pd.DataFrame({"clip_id": [f"c{i // 2}" for i in range(n)], "start": [9 * (i % 2) for i in range(n)]})

    def __len__(self):
        return len(self.meta)


def _prefs(tmp_path, scores=((1.0, 0.5), (0.8, 0.8), (0.9, 0.1)), ids=None):
    rows = [{"pair_id": f"p{i}", "ref_window": "c0@0", "target_window": (ids or {}).get(i, f"c{1 + i % 2}@9"),
             "score_chosen": a, "score_rejected": b} for i, (a, b) in enumerate(scores)]
    g = torch.Generator().manual_seed(0)
    n = len(rows)
    tensors = {"chosen_lat": torch.randn(n, 2, 3, 4, 4, generator=g), "rejected_lat": torch.randn(n, 2, 3, 4, 4, generator=g),
               "chosen_mot": torch.randn(n, 3, 16, generator=g), "rejected_mot": torch.randn(n, 3, 16, generator=g)}
    return write_preferences(tmp_path / "prefs.jsonl", rows, tensors)


def _one_line(excinfo, path, words):
    msg = str(excinfo.value)
    assert "\n" not in msg and str(path.name) in msg and words in msg, msg


def test_good_preference_file_drops_ties(tmp_path):
    p = load_preferences(_prefs(tmp_path), _Windows())
    assert len(p) == 2 and p.dropped_ties == 1
    assert p.target.tolist() == [3, 3] and p.ref.tolist() == [0, 0]
    assert p.tensors["chosen_lat"].shape[0] == 2


def test_preference_file_with_unknown_clip_id(tmp_path):
    path = _prefs(tmp_path, ids={1: "nobody@0"})
    with pytest.raises(InputError) as e:
        load_preferences(path, _Windows())
    _one_line(e, path, "line 2: unknown clip id 'nobody@0'")


def test_preference_file_of_ties_only(tmp_path):
    path = _prefs(tmp_path, scores=((0.5, 0.5), (0.2, 0.2)))
    with pytest.raises(InputError) as e:
        load_preferences(path, _Windows())
    _one_line(e, path, "only ties")


def test_tampered_preference_row(tmp_path):
    path = _prefs(tmp_path)
    lines = path.read_text().splitlines()
    row = json.loads(lines[2])
    row["score_rejected"] = 0.0  # a score edited after the file was written
    lines[2] = json.dumps(row)
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(InputError) as e:
        load_preferences(path, _Windows())
    _one_line(e, path, "line 3: tampered row")
    # swapped tensors are tampering too
    path = _prefs(tmp_path)
    t = torch.load(path.with_suffix(".jsonl.pt"))
    t["chosen_lat"], t["rejected_lat"] = t["rejected_lat"], t["chosen_lat"]
    torch.save(t, path.with_suffix(".jsonl.pt"))
    with pytest.raises(InputError) as e:
        load_preferences(path, _Windows())
    _one_line(e, path, "line 1: tampered row")


def test_empty_or_missing_preferences_never_train(tmp_path):
    path = _prefs(tmp_path)
    path.write_text("")
    with pytest.raises(InputError) as e:
        load_preferences(path, _Windows())
    _one_line(e, path, "no preference pairs")
    with pytest.raises(InputError):
        load_preferences(tmp_path / "absent.jsonl", _Windows())
    empty = Preferences(ref=np.zeros(0, int), target=np.zeros(0, int), tensors={}, dropped_ties=0, source="x")
    with pytest.raises(InputError, match="no preference pairs"):
        dpo_loop(ToyVelocity(), ToyVelocity(), None, empty, tmp_path / "dpo", steps=1, batch=1, beta=1.0, lr=0.1,
                 seed=0, checkpoint_every=1, device="cpu", progress=False)


# ------------------------------------------------------------------------------------------------ study votes
def _study_with_votes(tmp_path, human: dict[str, list[str]], simulated: dict[str, list[str]]):
    """The demo study (2 pairwise cases, 3 annotators each) with the given choices per pairwise case key."""
    from avatarv.study.db import Answer, Case, open_db
    from avatarv.study.fixtures import make_demo_manifest
    from avatarv.study.manifest import create_study, read_manifest

    media = tmp_path / "media"
    manifest = make_demo_manifest(media)
    db = tmp_path / "study.db"
    with open_db(db)() as s:
        create_study(s, read_manifest(manifest), media, 6, seed=3, annotators_per_case=3)
        for case in s.query(Case).filter(Case.kind == "pairwise"):
            asgs = sorted(case.assignments, key=lambda a: a.id)
            choices = [(c, False) for c in human.get(case.key, [])] + [(c, True) for c in simulated.get(case.key, [])]
            for asg, (choice, sim) in zip(asgs, choices):
                s.add(Answer(assignment=asg, choice=choice, simulated=sim))
        s.commit()
    return db, media


def test_study_votes_are_human_only_with_vote_shares(tmp_path):
    from avatarv.train.rlhf import study_preference_votes, study_votes

    db, _ = _study_with_votes(tmp_path, human={"pairwise_1": ["right", "right", "tie"], "pairwise_2": ["left"]},
                              simulated={"pairwise_2": ["right", "right"]})
    assert study_votes(db) == {"human": 3, "simulated": 2}  # ties carry no winner
    votes = {v["case"]: v for v in study_preference_votes(db)}
    assert set(votes) == {"pairwise_1", "pairwise_2"}
    one = votes["pairwise_1"]
    assert one["chosen"].endswith("gen_y.mp4") and one["rejected"].endswith("gen_x.mp4")  # right side won 2.5 : 0.5
    assert (one["score_chosen"], one["score_rejected"], one["votes"]) == (pytest.approx(2.5 / 3), pytest.approx(0.5 / 3), 3)
    two = votes["pairwise_2"]  # the simulated right-votes do not count
    assert two["chosen"].endswith("gen_x.mp4") and (two["score_chosen"], two["votes"]) == (1.0, 1)
    assert study_votes(tmp_path / "absent.db") == {"human": 0, "simulated": 0}
    (tmp_path / "junk.db").write_text("not sqlite")
    with pytest.raises(InputError, match="not a study database"):
        study_votes(tmp_path / "junk.db")


def test_study_votes_that_cannot_be_placed_are_refused(tmp_path):
    from avatarv.train.rlhf import study_pairs, study_preference_votes

    db, media = _study_with_votes(tmp_path, human={"pairwise_1": ["left"]}, simulated={})
    votes = study_preference_votes(db)

    class WS:
        def __init__(self):
            self.frames = torch.zeros(1, 9, 8, 8, 3, dtype=torch.uint8)
            self.clip_windows = {"someone": np.array([0])}

    class TR:
        class config:
            temporal_downsample = 1

    no_pairs = pd.DataFrame({"ref_clip_id": [], "target_clip_id": []})
    with pytest.raises(InputError) as e:  # the demo study has no bundle manifest.csv
        study_pairs(votes, WS(), no_pairs, None, TR())
    _one_line(e, media / "manifest.csv", "no study manifest")
    pd.DataFrame({"case_id": ["pairwise_1"], "clip_id": ["nobody"]}).to_csv(media / "manifest.csv", index=False)
    with pytest.raises(InputError) as e:
        study_pairs(votes, WS(), no_pairs, None, TR())
    _one_line(e, media / "manifest.csv", "case pairwise_1: unknown clip id 'nobody'")
