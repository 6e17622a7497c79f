"""Issue 7's proof, graded by the eval suite (stage 10_eval's validated metrics, not the training stage's probes).

Three claims of the curriculum, each a paired comparison on the same cross-scene benchmark cases (same reference,
audio and target for every system):
- lip sync: the personality-SFT model beats the "static reference frame + audio" baseline on the sync expert's
  delivered-sync confidence;
- motion style: the full SFT model is closer to the reference person's motion statistics than the "generic motion"
  ablation (motion stream off, `sft:no_motion`);
- identity: the SFT model's face is more similar to its own reference than to the other identities' references;
- distillation (stage 4): each distilled student keeps the teacher's (SFT's) sync confidence, face similarity and
  BRISQUE within 10 % (`KEEP_TOLERANCE`), paired on the same cases.
Each check reports the mean difference, per-case wins and the verdict; with a handful of cases (tiny profile) the
wins say how much a verdict rests on.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from ..media import atomic_path

# (check name, metric, system, baseline it must beat)
PAIRED_CHECKS = [
    ("lip_sync_beats_static_frame", "sync_conf", "sft", "static_frame"),
    ("motion_style_beats_generic_motion", "motion_style_sim", "sft", "sft:no_motion"),
]
# (metric, higher is better) a distilled student must keep within KEEP_TOLERANCE of its teacher
KEEP_METRICS = [("sync_conf", True), ("face_sim", True), ("brisque", False)]
KEEP_TOLERANCE = 0.10
TABLE_METRICS = ["sync_conf", "sync_lse_c", "lip_audio_corr", "motion_style_sim", "motion_stream_style_sim",
                 "face_sim", "face_sim_other", "face_sim_margin"]


def load_clip_rows(systems_dir: Path) -> dict[str, pd.DataFrame]:
    """System name → one row per benchmark clip (stage 10_eval's reports/10_eval/systems/<name>.json)."""
    out = {}
    for p in sorted(Path(systems_dir).glob("*.json")):
        doc = json.loads(p.read_text())
        rows = [r for r in doc.get("clips", []) if not r.get("error")]
        if rows:
            out[p.stem.replace("__", "/")] = pd.DataFrame(rows).set_index("clip")
    return out


def paired(rows: dict[str, pd.DataFrame], metric: str, system: str, baseline: str) -> dict:
    if system not in rows or baseline not in rows:
        return {"available": False, "reason": f"missing {system if system not in rows else baseline}"}
    a, b = rows[system], rows[baseline]
    if metric not in a or metric not in b:
        return {"available": False, "reason": f"no {metric}"}
    both = a[[metric]].join(b[[metric]], lsuffix="_sys", rsuffix="_base", how="inner").dropna()
    diff = both[f"{metric}_sys"] - both[f"{metric}_base"]
    return {"available": len(diff) > 0, "metric": metric, "system": system, "baseline": baseline,
            "n_cases": int(len(diff)), "system_mean": float(both[f"{metric}_sys"].mean()),
            "baseline_mean": float(both[f"{metric}_base"].mean()), "mean_diff": float(diff.mean()),
            "wins": int((diff > 0).sum()), "passed": bool(len(diff) > 0 and diff.mean() > 0)}


def identity_check(rows: dict[str, pd.DataFrame], system: str = "sft") -> dict:
    r = rows.get(system)
    if r is None or "face_sim_other" not in r:
        return {"available": False, "reason": f"no face_sim_other for {system}"}
    r = r[["face_sim", "face_sim_other"]].dropna()
    margin = r["face_sim"] - r["face_sim_other"]
    return {"available": len(r) > 0, "metric": "face_sim vs face_sim_other", "system": system, "n_cases": int(len(r)),
            "same": float(r["face_sim"].mean()), "other": float(r["face_sim_other"].mean()),
            "mean_diff": float(margin.mean()), "wins": int((margin > 0).sum()), "passed": bool(len(r) and margin.mean() > 0)}


def keeps_quality(rows: dict[str, pd.DataFrame], student: str, teacher: str = "sft",
                  tolerance: float = KEEP_TOLERANCE) -> dict:
    """The student's mean within `tolerance` (relative) of the teacher's, or better, on every KEEP_METRICS metric."""
    if student not in rows or teacher not in rows:
        return {"available": False, "reason": f"missing {student if student not in rows else teacher}"}
    per_metric, passed = {}, True
    for metric, higher in KEEP_METRICS:
        c = paired(rows, metric, student, teacher)
        if not c.get("available"):
            continue
        shortfall = (c["baseline_mean"] - c["system_mean"]) * (1 if higher else -1) / max(abs(c["baseline_mean"]), 1e-9)
        per_metric[metric] = {"student": c["system_mean"], "teacher": c["baseline_mean"], "shortfall": float(shortfall),
                              "kept": bool(shortfall <= tolerance)}
        passed &= per_metric[metric]["kept"]
    if not per_metric:
        return {"available": False, "reason": "no shared metric"}
    worst = max(per_metric, key=lambda m: per_metric[m]["shortfall"])
    return {"available": True, "metric": "/".join(per_metric), "system": student, "baseline": teacher,
            "n_cases": int(len(rows[student].index.intersection(rows[teacher].index))),
            "system_mean": per_metric[worst]["student"], "baseline_mean": per_metric[worst]["teacher"],
            "mean_diff": -per_metric[worst]["shortfall"], "wins": sum(v["kept"] for v in per_metric.values()),
            "per_metric": per_metric, "passed": bool(passed)}


def curriculum_checks(systems_dir: Path) -> dict:
    rows = load_clip_rows(systems_dir)
    checks = {name: paired(rows, metric, system, base) for name, metric, system, base in PAIRED_CHECKS}
    checks["identity_same_above_other"] = identity_check(rows)
    for student in sorted(n for n in rows if n.startswith("distill:")):
        checks[f"{student.replace(':', '_')}_keeps_teacher_quality"] = keeps_quality(rows, student)
    return checks


def ablation_table(systems_dir: Path) -> pd.DataFrame:
    """Mean of the issue-7 metrics per system (SFT, its ablations, earlier stages, baselines)."""
    rows = load_clip_rows(systems_dir)
    table = pd.DataFrame({name: {m: float(r[m].mean()) for m in TABLE_METRICS if m in r} for name, r in rows.items()}).T
    table.index.name = "system"
    return table.reset_index()


def write_report(systems_dir: Path, out: Path, backends: dict[str, str] | None = None) -> dict:
    """reports/curriculum_checks.md + .json: the ablation table and the three verdicts."""
    checks = curriculum_checks(systems_dir)
    table = ablation_table(systems_dir)
    backends = backends or {}
    lines = ["# Curriculum proof (issue 7), graded by stage 10_eval", "",
             "Paired on the cross-scene benchmark cases (held-out identities; reference from one scene, audio and target "
             "from another). Metric backends: " + ", ".join(f"{m} = {backends.get(m, '?')}" for m in
                                                           ("sync_conf", "motion_style_sim", "face_sim")) + ".", "",
             ("For the distillation checks the means and difference are the worst-kept metric's (relative shortfall; "
             "BRISQUE is lower-better)."), "",
             "| check | system | baseline | metric | system mean | baseline mean | mean diff | wins | passed |",
             "|---|---|---|---|---|---|---|---|---|"]
    for name, c in checks.items():
        if not c.get("available"):
            lines.append(f"| {name} | — | — | — | — | — | — | — | not run ({c.get('reason', '')}) |")
            continue
        sys_mean, base_mean = c.get("system_mean", c.get("same")), c.get("baseline_mean", c.get("other"))
        base = c.get("baseline", "other identities' references")
        wins = (f"{c['wins']}/{len(c['per_metric'])} metrics kept" if "per_metric" in c
                else f"{c['wins']}/{c['n_cases']}")
        lines.append(f"| {name} | {c['system']} | {base} | {c['metric']} | {sys_mean:.3f} | {base_mean:.3f} | "
                     f"{c['mean_diff']:+.3f} | {wins} | {'✓' if c['passed'] else '✗'} |")
    lines += ["", "## Ablation table (means over the benchmark cases)", "", table.to_markdown(index=False, floatfmt=".3f"), ""]
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp:
        Path(tmp).write_text("\n".join(lines))
    with atomic_path(out.with_suffix(".json")) as tmp:
        Path(tmp).write_text(json.dumps({"checks": checks, "table": table.to_dict(orient="records")}, indent=1,
                                        default=float))
    return checks


__all__ = ["ablation_table", "curriculum_checks", "identity_check", "load_clip_rows", "paired", "write_report"]
