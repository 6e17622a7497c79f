"""The shared training loop: a run killed mid-way and resumed ends bit-identical to an uninterrupted one."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from _train_toy import ToyNet, ToySource, toy_cfg, toy_loss

from avatarv.train.loop import list_checkpoints, loss_drop, read_history, step_seed, train_loop

TESTS = Path(__file__).parent


def _run(run_dir, resume=False, on_step=None, **cfg_kw):
    torch.manual_seed(0)
    model = ToyNet()
    return train_loop(model, toy_loss, ToySource(), toy_cfg(**cfg_kw), run_dir, seed=7, resume=resume, device="cpu",
                      progress=False, on_step=on_step)


def _assert_same(a, b):
    sa, sb = a.model.state_dict(), b.model.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k
    for pa, pb in zip(a.ema_model.parameters(), b.ema_model.parameters()):
        assert torch.equal(pa, pb)
    assert a.state.history == b.state.history


@pytest.mark.slow
def test_killed_process_resumes_bit_identical(tmp_path):
    """A real SIGKILL after step 7 (last checkpoint at 5) → resume replays steps 6–7 and matches exactly."""
    full = _run(tmp_path / "full")
    script = textwrap.dedent(f"""
        import os, signal, sys
        sys.path.insert(0, {str(TESTS)!r})
        import torch
        torch.set_num_threads(1)
        from _train_toy import ToyNet, ToySource, toy_cfg, toy_loss
        from avatarv.train.loop import train_loop
        def kill(state):
            if state.step == 7:
                os.kill(os.getpid(), signal.SIGKILL)
        torch.manual_seed(0)
        train_loop(ToyNet(), toy_loss, ToySource(), toy_cfg(), {str(tmp_path / 'killed')!r}, seed=7, resume=False,
                   device="cpu", progress=False, on_step=kill)
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    assert [p.name for p in list_checkpoints(tmp_path / "killed")] == ["step_000005"]
    resumed = _run(tmp_path / "killed", resume=True)
    assert resumed.resumed_from == 5
    _assert_same(full, resumed)
    assert read_history(tmp_path / "killed" / "history.jsonl") == full.state.history


def test_resume_changes_nothing_when_interrupted_in_process(tmp_path):
    """Same guarantee through an exception (e.g. Ctrl-C) at a checkpoint boundary, and a half-written checkpoint
    folder left by a kill during saving is ignored."""

    class Stop(Exception):
        pass

    def stop(state):
        if state.step == 10:
            raise Stop

    full = _run(tmp_path / "full")
    with pytest.raises(Stop):
        _run(tmp_path / "cut", on_step=stop)
    (tmp_path / "cut" / "checkpoints" / ".tmp_step_000015").mkdir()
    resumed = _run(tmp_path / "cut", resume=True)
    assert resumed.resumed_from == 10
    _assert_same(full, resumed)


def test_keeps_the_last_two_checkpoints_and_learns(tmp_path):
    res = _run(tmp_path / "r", steps=30, checkpoint_every=5, lr=2e-2, muon_lr=0.05)
    assert [p.name for p in list_checkpoints(tmp_path / "r")] == ["step_000025", "step_000030"]
    drop = loss_drop(res.state.history, frac=0.2)
    assert drop["loss_last"] < 0.5 * drop["loss_first"]
    lrs = [h["lr"] for h in res.state.history]
    assert lrs[0] < lrs[2] and lrs[-1] < lrs[3]  # warmup up, cosine down


def test_other_seed_gives_other_run(tmp_path):
    a = _run(tmp_path / "a")
    torch.manual_seed(0)
    b = train_loop(ToyNet(), toy_loss, ToySource(), toy_cfg(), tmp_path / "b", seed=8, device="cpu", progress=False)
    assert not torch.equal(a.model.head.weight, b.model.head.weight)
    assert len({step_seed(1, s, r, m) for s in range(50) for r in range(2) for m in range(2)}) == 200


def test_time_limit_stops_early_and_a_streamed_source_gives_the_same_run(tmp_path):
    """`time_limit_s` ends the run at the step where the clock ran out, without a checkpoint for the cut; `stream`
    feeds the same batches through DataLoader workers (data/loader.LoaderSource), so the run is the same."""
    cut = _run(tmp_path / "cut", steps=40, checkpoint_every=100, time_limit_s=1e-9)
    assert cut.stopped_early and cut.state.step == 1 and not list_checkpoints(tmp_path / "cut")
    plain = _run(tmp_path / "plain", steps=6)
    streamed = _run(tmp_path / "streamed", steps=6, stream=True, loader_workers=1)
    assert not plain.stopped_early
    _assert_same(plain, streamed)
