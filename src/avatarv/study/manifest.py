"""A study owner's manifest of cases → a study in the database (seed: "Human Evaluation", "The Turing Test").

Manifest (CSV, JSON list / {"cases": [...]}, or parquet), one row per case, paths relative to the media root:
    case_id   unique name of the case
    kind      turing | likert | pairwise
    video_a   turing: the REAL video;   likert: the video rated;   pairwise: system_a's video
    system_a  turing: ignored ('real'); likert/pairwise: the system that made video_a
    video_b   turing: the generated video; pairwise: system_b's video; likert: empty
    system_b  turing/pairwise: the system that made video_b
    identity  optional, the person shown (for per-identity breakdowns)

Creating a study shuffles Turing sides and pairwise order with the study seed (so position cannot give the answer
away), assigns each case to exactly `annotators_per_case` annotators with balanced load, and gives every annotator
an invite token. Every path is checked to lie inside the media root before anything is written.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np
import pandas as pd
from sqlalchemy.orm import Session

from ..errors import InputError
from .db import KINDS, Annotator, Assignment, Case, Study, System

VIDEO_SUFFIXES = (".mp4", ".webm")
REAL = "real"


@dataclass(frozen=True)
class CaseSpec:
    case_id: str
    kind: str
    video_a: str
    system_a: str
    video_b: str = ""
    system_b: str = ""
    identity: str = ""


def read_manifest(path: str | Path) -> list[CaseSpec]:
    """Read and check a manifest file (.csv, .json, .parquet); bad rows raise InputError naming file and row."""
    path = Path(path)
    if not path.exists():
        raise InputError(path, "manifest not found")
    try:
        if path.suffix == ".csv":
            df = pd.read_csv(path, dtype=str, keep_default_na=False)
        elif path.suffix == ".parquet":
            df = pd.read_parquet(path)
        elif path.suffix == ".json":
            data = json.loads(path.read_text())
            df = pd.DataFrame(data["cases"] if isinstance(data, dict) else data)
        else:
            raise InputError(path, "manifest must be .csv, .json or .parquet")
    except (ValueError, KeyError, OSError) as e:
        if isinstance(e, InputError):
            raise
        raise InputError(path, f"unreadable manifest ({type(e).__name__}: {str(e).splitlines()[0][:120]})") from None
    return cases_from_frame(df, where=path)


def cases_from_frame(df: pd.DataFrame, where: str | Path = "manifest") -> list[CaseSpec]:
    missing = {"case_id", "kind", "video_a"} - set(df.columns)
    if missing:
        raise InputError(where, f"missing column(s) {', '.join(sorted(missing))}")
    cases, seen = [], set()
    for i, row in enumerate(df.fillna("").astype(str).to_dict("records")):
        spec = CaseSpec(**{f: str(row.get(f, "") or "").strip() for f in CaseSpec.__dataclass_fields__})
        _check_case(spec, f"row {i}", where)
        if spec.case_id in seen:
            raise InputError(where, f"row {i}: duplicate case_id {spec.case_id!r}")
        seen.add(spec.case_id)
        cases.append(spec)
    if not cases:
        raise InputError(where, "manifest has no cases")
    return cases


def _check_case(c: CaseSpec, row: str, where) -> None:
    if not c.case_id:
        raise InputError(where, f"{row}: empty case_id")
    if c.kind not in KINDS:
        raise InputError(where, f"{row}: kind {c.kind!r} is not one of {', '.join(KINDS)}")
    if c.kind == "likert":
        if not c.system_a:
            raise InputError(where, f"{row}: likert case needs system_a")
        if c.video_b:
            raise InputError(where, f"{row}: likert case rates one video; video_b must be empty")
    else:
        if not c.video_b or not c.system_b:
            raise InputError(where, f"{row}: {c.kind} case needs video_b and system_b")
        if c.kind == "pairwise" and (not c.system_a or c.system_a == c.system_b):
            raise InputError(where, f"{row}: pairwise case needs two different systems")
        if c.kind == "turing" and c.system_b == REAL:
            raise InputError(where, f"{row}: turing case's system_b is the generator, not {REAL!r}")
    for v in (c.video_a, c.video_b):
        if v:
            check_media_path(v, where, row)


def check_media_path(rel: str, where="manifest", row: str = "") -> None:
    """Refuse absolute paths, '..' and non-video suffixes: media must stay inside the study's media root."""
    p = PurePosixPath(rel.replace("\\", "/"))
    if p.is_absolute() or ".." in p.parts or rel.startswith("~"):
        raise InputError(where, f"{row}: media path {rel!r} escapes the media root")
    if p.suffix.lower() not in VIDEO_SUFFIXES:
        raise InputError(where, f"{row}: media path {rel!r} is not a {'/'.join(VIDEO_SUFFIXES)} video")


def resolve_media(media_root: str | Path, rel: str) -> Path:
    """Absolute path of `rel` under `media_root`, refused (InputError) when it resolves outside it (symlinks too)."""
    check_media_path(rel, media_root)
    root = Path(media_root).resolve()
    full = (root / rel).resolve()
    if not full.is_relative_to(root):
        raise InputError(rel, f"resolves outside the media root {root}")
    return full


def balanced_assignment(n_cases: int, n_annotators: int, per_case: int, seed: int) -> list[list[int]]:
    """For each case, the `per_case` annotators who judge it: always the least-loaded ones (random tie-break), so
    loads differ by at most one. Returns, per annotator, their case indices in a seeded random order."""
    if n_annotators < per_case:
        raise InputError("study", f"{n_annotators} annotators cannot give each case {per_case} distinct annotators")
    rng = np.random.default_rng(seed)
    load = np.zeros(n_annotators, int)
    queues: list[list[int]] = [[] for _ in range(n_annotators)]
    for case in rng.permutation(n_cases):
        tie_break = rng.permutation(n_annotators)
        chosen = sorted(range(n_annotators), key=lambda a: (load[a], tie_break[a]))[:per_case]
        for a in chosen:
            load[a] += 1
            queues[a].append(int(case))
    return [[q[i] for i in rng.permutation(len(q))] for q in queues]


def create_study(
    session: Session,
    cases: list[CaseSpec],
    media_root: str | Path,
    annotators: int | list[str],
    *,
    seed: int,
    annotators_per_case: int = 3,
    name: str = "study",
) -> Study:
    """Write a new study (systems, cases with shuffled sides, annotators with tokens, assignments); commit."""
    media_root = Path(media_root).resolve()
    for c in cases:
        for v in (c.video_a, c.video_b):
            if v and not resolve_media(media_root, v).is_file():
                raise InputError(media_root / v, f"case {c.case_id}: video not found under the media root")
    names = [f"annotator{i + 1:02d}" for i in range(annotators)] if isinstance(annotators, int) else list(annotators)
    if len(set(names)) != len(names):
        raise InputError("study", "annotator names must be unique")
    if session.query(Study).filter_by(name=name).first() is not None:
        raise InputError(name, "a study of this name already exists in the database")

    rng = np.random.default_rng(seed)
    study = Study(
        name=name, owner_token=secrets.token_urlsafe(18), media_root=str(media_root), seed=seed,
        annotators_per_case=annotators_per_case,
    )
    session.add(study)
    systems: dict[str, System] = {}

    def system(sys_name: str) -> System:
        if sys_name not in systems:
            systems[sys_name] = System(study=study, name=sys_name, is_real=sys_name == REAL)
        return systems[sys_name]

    rows = []
    for c in cases:
        a, b = (REAL if c.kind == "turing" else c.system_a), c.system_b
        swap = c.kind != "likert" and bool(rng.integers(2))  # sides drawn for every two-video case, seeded
        left, right = ((c.video_b, b), (c.video_a, a)) if swap else ((c.video_a, a), (c.video_b, b))
        case = Case(
            uid=secrets.token_hex(8), study=study, key=c.case_id, kind=c.kind, identity=c.identity,
            left_media=left[0], left_system=system(left[1]),
            right_media=right[0] or None, right_system=system(right[1]) if right[0] else None,
            real_side=("right" if swap else "left") if c.kind == "turing" else None,
        )
        rows.append(case)
    session.add_all(rows)
    queues = balanced_assignment(len(rows), len(names), annotators_per_case, seed + 1)
    for annotator_name, queue in zip(names, queues):
        ann = Annotator(study=study, name=annotator_name, token=secrets.token_urlsafe(18))
        session.add(ann)
        for pos, ci in enumerate(queue):
            session.add(Assignment(case=rows[ci], annotator=ann, position=pos))
    session.commit()
    return study
