"""The rules of voting, independent of HTTP: who may see which case and video, and what a valid answer is.

The web app and the SIMULATED-answer generator both go through `record_answer`, so the notebook's simulated
study exercises the same checks as a person's browser. Every refusal is a `Refusal(status, message)` raised
before anything is written; the database's UNIQUE/CHECK constraints back the checks up under races.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ..errors import InputError
from .db import DIMENSIONS, SIDES, Annotator, Answer, Assignment, Case, Study
from .manifest import resolve_media

CHOICES = {"turing": SIDES, "pairwise": (*SIDES, "tie")}


class Refusal(Exception):
    """A request the study refuses; `status` is the HTTP status the app answers with."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


def annotator_for(session: Session, token: str) -> Annotator:
    ann = session.scalar(select(Annotator).where(Annotator.token == token))
    if ann is None:
        raise Refusal(404, "unknown invite token")
    return ann


def study_for_owner(session: Session, owner_token: str) -> Study:
    study = session.scalar(select(Study).where(Study.owner_token == owner_token))
    if study is None:
        raise Refusal(404, "unknown owner token")
    return study


def next_assignment(session: Session, ann: Annotator) -> Assignment | None:
    """The annotator's first unanswered case in queue order, or None when they are done."""
    return session.scalar(
        select(Assignment)
        .outerjoin(Answer, Answer.assignment_id == Assignment.id)
        .where(Assignment.annotator_id == ann.id, Answer.id.is_(None))
        .order_by(Assignment.position)
        .limit(1)
    )


def progress(session: Session, ann: Annotator) -> tuple[int, int]:
    """(answered, assigned) for one annotator."""
    total = len(ann.assignments)
    done = sum(1 for a in ann.assignments if a.answer is not None)
    return done, total


def assignment_for(session: Session, ann: Annotator, case_uid: str) -> Assignment:
    """The annotator's assignment of case `case_uid`; unknown or not-assigned case ids are refused."""
    if not isinstance(case_uid, str) or not case_uid or len(case_uid) > 64:
        raise Refusal(400, "missing or malformed case id")
    case = session.scalar(select(Case).where(Case.uid == case_uid, Case.study_id == ann.study_id))
    if case is None:
        raise Refusal(404, "unknown case id")
    asg = session.scalar(select(Assignment).where(Assignment.case_id == case.id, Assignment.annotator_id == ann.id))
    if asg is None:
        raise Refusal(403, "this case is not assigned to you")
    return asg


def parse_answer(kind: str, form: dict[str, list[str]]) -> dict[str, object]:
    """Validate the submitted fields for a case of `kind` → Answer column values. Unknown, repeated or missing
    fields and out-of-range values are refused; nothing is coerced silently."""
    fields = {k: v for k, v in form.items() if k != "case"}
    for k, v in fields.items():
        if len(v) != 1:
            raise Refusal(422, f"field {k!r} sent {len(v)} times")
    expected = set(DIMENSIONS) if kind == "likert" else {"choice"}
    unknown, missing = set(fields) - expected, expected - set(fields)
    if unknown:
        raise Refusal(422, f"unexpected field {min(unknown)!r} for a {kind} case")
    if missing:
        raise Refusal(422, f"missing answer {min(missing)!r}")
    if kind == "likert":
        out: dict[str, object] = {}
        for d in DIMENSIONS:
            raw = fields[d][0].strip()
            if not raw.isdigit() or not 1 <= int(raw) <= 5:
                raise Refusal(422, f"{d} must be an integer from 1 to 5, got {raw[:20]!r}")
            out[d] = int(raw)
        return out
    choice = fields["choice"][0].strip()
    if choice not in CHOICES[kind]:
        raise Refusal(422, f"choice must be one of {', '.join(CHOICES[kind])}, got {choice[:20]!r}")
    return {"choice": choice}


def record_answer(session: Session, token: str, form: dict[str, list[str]], *, simulated: bool = False) -> Answer:
    """Check and store one vote from the annotator holding `token`; raise Refusal and store nothing otherwise."""
    ann = annotator_for(session, token)
    sent = form.get("case") or []
    asg = assignment_for(session, ann, sent[0] if len(sent) == 1 else "")  # a repeated case field is malformed
    if asg.answer is not None:
        raise Refusal(409, "this case was already answered; a vote is stored once")
    values = parse_answer(asg.case.kind, form)
    answer = Answer(assignment=asg, simulated=simulated, **values)
    session.add(answer)
    try:
        session.commit()
    except IntegrityError:  # a concurrent duplicate submission lost the race
        session.rollback()
        raise Refusal(409, "this case was already answered; a vote is stored once") from None
    return answer


def media_path(session: Session, token: str, case_uid: str, side: str) -> Path:
    """File behind an annotator's video URL: only for their own cases, only inside the study's media root."""
    ann = annotator_for(session, token)
    case = assignment_for(session, ann, case_uid).case
    if side not in SIDES:
        raise Refusal(404, "no such video")
    rel = case.left_media if side == "left" else case.right_media
    if not rel:
        raise Refusal(404, "no such video")
    try:
        path = resolve_media(case.study.media_root, rel)
    except InputError:
        raise Refusal(403, "video path escapes the study's media root") from None
    if not path.is_file():
        raise Refusal(404, "video file missing")
    return path
