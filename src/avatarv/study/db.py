"""SQLite schema of the human study (seed: "Human Evaluation" and "The Turing Test"), through SQLAlchemy 2's ORM.

All state of a running study lives in one SQLite file, so the app survives a restart. The constraints carry the
study's rules, not just the app code: an annotator is assigned a case at most once, an assignment holds at most one
answer (a replayed vote hits UNIQUE and stores nothing), and Likert scores outside 1..5 are refused by CHECKs.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import (
    CheckConstraint,
    DateTime,
    ForeignKey,
    Integer,
    String,
    UniqueConstraint,
    create_engine,
    event,
    inspect,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship, sessionmaker

KINDS = ("turing", "likert", "pairwise")
SIDES = ("left", "right")
# Likert dimensions of the seed's 5-point study, in the order the page shows them.
DIMENSIONS = ("lip_sync", "identity", "naturalness", "expressiveness", "visual_quality", "overall")
DIMENSION_LABELS = {
    "lip_sync": "Lip sync",
    "identity": "Identity (looks like the person)",
    "naturalness": "Motion naturalness",
    "expressiveness": "Expressiveness / personality",
    "visual_quality": "Visual quality",
    "overall": "Overall",
}


def _now() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    pass


class Study(Base):
    __tablename__ = "studies"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    owner_token: Mapped[str] = mapped_column(String(64), unique=True)
    media_root: Mapped[str] = mapped_column(String(1000))
    seed: Mapped[int] = mapped_column(Integer)
    annotators_per_case: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)

    systems: Mapped[list[System]] = relationship(back_populates="study", cascade="all, delete-orphan")
    cases: Mapped[list[Case]] = relationship(back_populates="study", cascade="all, delete-orphan")
    annotators: Mapped[list[Annotator]] = relationship(back_populates="study", cascade="all, delete-orphan")


class System(Base):
    """A source of videos: 'real' (the recording) or a generator (checkpoint, baseline, stand-in)."""

    __tablename__ = "systems"
    __table_args__ = (UniqueConstraint("study_id", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id"))
    name: Mapped[str] = mapped_column(String(200))
    is_real: Mapped[bool] = mapped_column(default=False)

    study: Mapped[Study] = relationship(back_populates="systems")


class Case(Base):
    """One thing to judge. turing: left/right = real + generated (sides shuffled by the study seed);
    pairwise: left/right = two systems; likert: left only. `uid` is the opaque id annotators see."""

    __tablename__ = "cases"
    __table_args__ = (
        UniqueConstraint("study_id", "key"),
        CheckConstraint(f"kind IN {KINDS}", name="case_kind"),
        CheckConstraint("real_side IS NULL OR real_side IN ('left', 'right')", name="case_real_side"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    uid: Mapped[str] = mapped_column(String(32), unique=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id"))
    key: Mapped[str] = mapped_column(String(200))  # the manifest's case_id
    kind: Mapped[str] = mapped_column(String(16))
    identity: Mapped[str] = mapped_column(String(200), default="")
    left_media: Mapped[str] = mapped_column(String(1000))  # relative to the study's media root
    left_system_id: Mapped[int] = mapped_column(ForeignKey("systems.id"))
    right_media: Mapped[str | None] = mapped_column(String(1000), nullable=True)
    right_system_id: Mapped[int | None] = mapped_column(ForeignKey("systems.id"), nullable=True)
    real_side: Mapped[str | None] = mapped_column(String(8), nullable=True)  # turing only

    study: Mapped[Study] = relationship(back_populates="cases")
    left_system: Mapped[System] = relationship(foreign_keys=[left_system_id])
    right_system: Mapped[System | None] = relationship(foreign_keys=[right_system_id])
    assignments: Mapped[list[Assignment]] = relationship(back_populates="case", cascade="all, delete-orphan")


class Annotator(Base):
    __tablename__ = "annotators"
    __table_args__ = (UniqueConstraint("study_id", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id"))
    name: Mapped[str] = mapped_column(String(200))
    token: Mapped[str] = mapped_column(String(64), unique=True)  # the invite link's secret

    study: Mapped[Study] = relationship(back_populates="annotators")
    assignments: Mapped[list[Assignment]] = relationship(
        back_populates="annotator", order_by="Assignment.position", cascade="all, delete-orphan"
    )


class Assignment(Base):
    """Case shown to an annotator, at `position` in that annotator's queue. `shown_at` (first time the page was
    served) gives the time spent per answer, a quality-control signal for rushed annotators."""

    __tablename__ = "assignments"
    __table_args__ = (UniqueConstraint("case_id", "annotator_id"), UniqueConstraint("annotator_id", "position"))

    id: Mapped[int] = mapped_column(primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"))
    annotator_id: Mapped[int] = mapped_column(ForeignKey("annotators.id"))
    position: Mapped[int] = mapped_column(Integer)
    shown_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)  # first page view

    case: Mapped[Case] = relationship(back_populates="assignments")
    annotator: Mapped[Annotator] = relationship(back_populates="assignments")
    answer: Mapped[Answer | None] = relationship(back_populates="assignment", uselist=False)


def _likert_check(col: str) -> CheckConstraint:
    return CheckConstraint(f"{col} IS NULL OR ({col} BETWEEN 1 AND 5)", name=f"answer_{col}_range")


class Answer(Base):
    """One vote. UNIQUE(assignment_id): a case is answered once per annotator, whatever the client sends."""

    __tablename__ = "answers"
    __table_args__ = (
        UniqueConstraint("assignment_id"),
        CheckConstraint("choice IS NULL OR choice IN ('left', 'right', 'tie')", name="answer_choice"),
        *(_likert_check(d) for d in DIMENSIONS),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    assignment_id: Mapped[int] = mapped_column(ForeignKey("assignments.id"))
    choice: Mapped[str | None] = mapped_column(String(8), nullable=True)  # turing: side picked as real
    lip_sync: Mapped[int | None] = mapped_column(Integer, nullable=True)
    identity: Mapped[int | None] = mapped_column(Integer, nullable=True)
    naturalness: Mapped[int | None] = mapped_column(Integer, nullable=True)
    expressiveness: Mapped[int | None] = mapped_column(Integer, nullable=True)
    visual_quality: Mapped[int | None] = mapped_column(Integer, nullable=True)
    overall: Mapped[int | None] = mapped_column(Integer, nullable=True)
    simulated: Mapped[bool] = mapped_column(default=False)  # written by simulate.py, never by a person
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)

    assignment: Mapped[Assignment] = relationship(back_populates="answer")


def _sqlite_pragmas(dbapi_conn, _record) -> None:
    # Foreign keys are off by default in SQLite; WAL lets the results page read while votes are written.
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA journal_mode=WAL")
    cur.close()


def open_db(path: str | Path) -> sessionmaker:
    """Create (if needed) the schema in the SQLite file at `path` and return a session factory."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(f"sqlite:///{path}", connect_args={"check_same_thread": False})
    event.listen(engine, "connect", _sqlite_pragmas)
    Base.metadata.create_all(engine)
    _add_missing_columns(engine)
    return sessionmaker(engine, expire_on_commit=False)


def _add_missing_columns(engine) -> None:
    """Additive migration: a study database made by an older version gets the nullable columns added since, so
    a running study is never lost to a schema change (columns are only ever added, never changed)."""
    existing = inspect(engine)
    with engine.begin() as conn:
        for table in Base.metadata.sorted_tables:
            have = {c["name"] for c in existing.get_columns(table.name)}
            for col in table.columns:
                if col.name not in have and col.nullable:
                    conn.execute(text(f'ALTER TABLE "{table.name}" ADD COLUMN "{col.name}" '
                                      f"{col.type.compile(engine.dialect)}"))
