"""MLflow tracking: a stage run nests under the repro's parent, logs params/metrics and gets its notebook."""

from __future__ import annotations

import json

import pytest


@pytest.fixture
def mlflow_tmp(tmp_path, monkeypatch):
    mlflow = pytest.importorskip("mlflow")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlflow.db")
    from avatarv import tracking

    monkeypatch.setattr(tracking, "MLRUNS", tmp_path / "mlruns")
    yield mlflow, tracking, tmp_path
    while mlflow.active_run():
        mlflow.end_run()


def test_stage_run_nests_logs_and_attaches_notebook(mlflow_tmp, tiny_cfg, monkeypatch):
    mlflow, tracking, tmp = mlflow_tmp
    parent = tracking.begin_repro()
    monkeypatch.setenv(tracking.PARENT_ENV, parent)
    tracking.start_stage("01_curate", tiny_cfg)
    tracking.log_metrics({"loss": 0.5, "nan": float("nan")}, step=1)
    metrics = tmp / "metrics.json"
    metrics.write_text(json.dumps({"recall": {"blur": 0.9}, "n": 3, "name": "x"}))
    tracking.end_stage(metrics)
    nb = tmp / "01_curate.ipynb"
    nb.write_text("{}")
    tracking.attach_notebook("01_curate", nb)
    tracking.finish_repro(parent, ok=True)

    client = mlflow.MlflowClient()
    runs = mlflow.search_runs(filter_string="tags.stage = '01_curate'")
    assert len(runs) == 1
    run = client.get_run(runs.iloc[0].run_id)
    assert run.info.run_name == "01_curate"
    assert run.data.tags["mlflow.parentRunId"] == parent
    assert run.data.params["curate.engine"] == tiny_cfg.curate.engine
    assert "corpus.identities" not in run.data.params  # only the stage's own sections
    assert run.data.metrics["recall.blur"] == 0.9 and run.data.metrics["n"] == 3
    assert "nan" not in run.data.metrics
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)} | {
        a.path for a in client.list_artifacts(run.info.run_id, "notebook")
    }
    assert "metrics.json" in artifacts and "notebook/01_curate.ipynb" in artifacts
    assert client.get_run(parent).info.status == "FINISHED"


def test_loss_history_logs_its_numbers_and_skips_labels(mlflow_tmp, tiny_cfg):
    """A training history may carry labels (the distillation phase): only numbers become metrics, per step."""
    mlflow, tracking, _ = mlflow_tmp
    from avatarv.train.report import log_history

    tracking.start_stage("06_distill", tiny_cfg)
    run_id = mlflow.active_run().info.run_id
    log_history([{"step": 1, "phase": "warm", "loss": 0.5}, {"step": 2, "phase": "dmd", "loss": 0.25,
                                                             "dmd": float("nan")}], "distill_dmd")
    tracking.end_stage()
    client = mlflow.MlflowClient()
    assert [(m.step, m.value) for m in client.get_metric_history(run_id, "distill_dmd/loss")] == [(1, 0.5), (2, 0.25)]
    assert client.get_metric_history(run_id, "distill_dmd/phase") == []
    assert client.get_metric_history(run_id, "distill_dmd/dmd") == []
