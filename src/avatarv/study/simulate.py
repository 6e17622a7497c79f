"""SIMULATED annotators, so the analysis, plots and tables exist before any person has voted.

Every simulated vote goes through `answers.record_answer` (the app's own checks) and is flagged `simulated` in the
database; the results page, the tables and the plots say SIMULATED wherever such answers are present. The model is
deliberately simple: each annotator has a Turing skill around `accuracy` (the seed reports 77.8 %), each system a
latent quality that sets its Likert means and pairwise win odds. None of this is evidence about any generator.
"""

from __future__ import annotations

import numpy as np
from sqlalchemy.orm import Session

from .answers import record_answer
from .db import DIMENSIONS, Study

REAL_QUALITY = 4.6


def system_quality(name: str, is_real: bool) -> float:
    """Latent 5-point quality of a simulated system: real video near the top, others spread by a stable hash."""
    if is_real:
        return REAL_QUALITY
    h = sum((i + 1) * ord(ch) for i, ch in enumerate(name)) % 1000 / 1000
    return 3.2 + 1.2 * h


def simulate_answers(session: Session, study: Study, *, seed: int, accuracy: float = 0.778) -> int:
    """Answer every still-open assignment of `study` with SIMULATED votes; returns how many were stored."""
    rng = np.random.default_rng(seed)
    quality = {s.name: system_quality(s.name, s.is_real) for s in study.systems}
    stored = 0
    for ann in sorted(study.annotators, key=lambda a: a.name):
        skill = float(np.clip(rng.normal(accuracy, 0.08), 0.5, 0.99))
        bias = rng.normal(0, 0.3)
        for asg in ann.assignments:
            if asg.answer is not None:
                continue
            case = asg.case
            form = {"case": [case.uid]}
            if case.kind == "turing":
                correct = rng.random() < skill
                fooled_side = "right" if case.real_side == "left" else "left"
                form["choice"] = [case.real_side if correct else fooled_side]
            elif case.kind == "pairwise":
                diff = quality[case.left_system.name] - quality[case.right_system.name]
                u = rng.random()
                p_left = 1 / (1 + np.exp(-2 * diff))
                form["choice"] = ["tie" if u < 0.1 else ("left" if rng.random() < p_left else "right")]
            else:
                mean = quality[case.left_system.name] + bias
                for d in DIMENSIONS:
                    form[d] = [str(int(np.clip(np.rint(mean + rng.normal(0, 0.6)), 1, 5)))]
            record_answer(session, ann.token, form, simulated=True)
            stored += 1
    return stored
