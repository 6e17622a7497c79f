"""The repository's promises: set-up from two commands, thin notebooks, a DVC pipeline wired to them."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def _stages():
    return yaml.safe_load((ROOT / "dvc.yaml").read_text()).get("stages") or {}


def test_ci_calls_make_test_and_makefile_installs_system_packages():
    assert "make test" in (ROOT / ".ci/run").read_text()
    mk = (ROOT / "Makefile").read_text()
    for pkg in ("ffmpeg", "espeak-ng", "chromium", "chromium-driver"):
        assert re.search(rf"APT_PKGS :=.*\b{pkg}\b", mk), pkg
    assert "requirements.lock" in mk and "dvc repro" in mk


def test_environment_yml_mirrors_the_lock():
    pins = {ln.strip() for ln in (ROOT / "requirements.lock").read_text().splitlines() if "==" in ln}
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert {p for p in pip if "==" in p} == pins


def test_one_opencv_wheel():
    """Several wheels ship the same cv2 module and overwrite each other's files; the lock keeps the contrib one."""
    pins = [ln.split("==")[0] for ln in (ROOT / "requirements.lock").read_text().splitlines() if "==" in ln]
    assert [p for p in pins if p.startswith("opencv")] == ["opencv-contrib-python"]
    assert "--no-deps -r $(LOCK)" in (ROOT / "Makefile").read_text()


def test_every_stage_runs_its_own_notebook_with_papermill():
    stages = _stages()
    for name, st in stages.items():
        cmd = " ".join(st["cmd"]) if isinstance(st["cmd"], list) else st["cmd"]
        assert cmd.startswith(f"papermill notebooks/{name}.ipynb reports/notebooks/{name}.ipynb -p profile ${{profile}}"), name
        assert f"notebooks/{name}.ipynb" in st["deps"], name
        assert "profile" in st.get("params", []), name
        if name == "14_summary":  # the one file `dvc metrics show` reads, gathered from every stage's own
            assert [next(iter(m)) for m in st["metrics"]] == ["reports/summary.json"]
            continue
        outs = [str(next(iter(o))) if isinstance(o, dict) else str(o) for o in st.get("outs", [])]
        assert f"reports/{name}/metrics.json" in outs and "metrics" not in st, name
        assert f"reports/{name}/metrics.json" in stages["14_summary"]["deps"] or name == "10_eval", name


def test_notebooks_are_thin_and_stored_without_outputs():
    for nb_path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        nb = json.loads(nb_path.read_text())
        code = [c for c in nb["cells"] if c["cell_type"] == "code"]
        assert "parameters" in code[0]["metadata"].get("tags", []), nb_path.name
        assert all(not c.get("outputs") and c.get("execution_count") is None for c in code), nb_path.name
        src = "\n".join("".join(c["source"]) for c in code)
        assert not re.search(r"^\s*(def|class)\s", src, re.MULTILINE), f"{nb_path.name} defines logic; move it to src/"


def test_bad_profile_from_the_cli_is_one_line():
    r = subprocess.run([sys.executable, "-m", "avatarv", "--profile", "huge", "synth", "--out", "/tmp/x"],
                       capture_output=True, text=True, check=False, cwd=ROOT)
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == ["avatarv synth: error: unknown profile 'huge' (known: tiny, small, paper)"]
