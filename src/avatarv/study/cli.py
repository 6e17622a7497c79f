"""`avatarv study create|serve|export|analyze|simulate`: the human study from bundle to results.

    avatarv study export  --corpus data/corpus --out data/study [--generated NAME=DIR ...]
    avatarv study create  --db runs/study/study.db --manifest data/study/manifest.csv --media-root data/study
    avatarv study serve   --db runs/study/study.db [--host H --port P]
    avatarv study analyze --db runs/study/study.db --out reports/study
    avatarv study simulate --db runs/study/study.db     # SIMULATED votes for demos; flagged everywhere
`serve --manifest M --media-root R` creates the study first when the database holds none.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..config import load_config
from ..errors import InputError
from ..paths import CORPUS, DATA, REPORTS, RUNS

DEFAULT_DB = RUNS / "study" / "study.db"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="study_command", required=True, metavar="ACTION")

    def with_db(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument("--db", type=Path, default=DEFAULT_DB, help=f"SQLite file (default {DEFAULT_DB})")
        return p

    def with_creation(p: argparse.ArgumentParser, required: bool) -> None:
        p.add_argument("--manifest", type=Path, required=required, help="cases: .csv, .json or .parquet")
        p.add_argument("--media-root", type=Path, required=required, help="folder the manifest's paths are under")
        p.add_argument("--annotators", default=None, help="a count, or comma-separated names (default: study.annotators)")
        p.add_argument("--name", default="study", help="study name (unique in the database)")
        p.add_argument("--seed", type=int, default=None, help="side/assignment shuffling seed (default: params seed)")
        p.add_argument("--base-url", default=None, help="printed links start with this (default http://HOST:PORT)")

    with_creation(with_db(sub.add_parser("create", help="create a study from a manifest; print invite links")), True)
    serve = with_db(sub.add_parser("serve", help="run the annotation web app"))
    serve.add_argument("--host", default=None)
    serve.add_argument("--port", type=int, default=None)
    with_creation(serve, False)

    exp = sub.add_parser("export", help="build the deterministic study bundle from the corpus / generated videos")
    exp.add_argument("--corpus", type=Path, default=CORPUS)
    exp.add_argument("--out", type=Path, default=DATA / "study")
    exp.add_argument("--generated", action="append", default=[], metavar="NAME=DIR",
                     help="a system's generated videos, DIR/<clip_id>.mp4 (repeatable)")

    an = with_db(sub.add_parser("analyze", help="tables + plots + metrics.json of a study"))
    an.add_argument("--name", default=None, help="study name (default: the only/first study)")
    an.add_argument("--out", type=Path, default=REPORTS / "study")
    an.add_argument("--no-mlflow", action="store_true", help="do not log the analysis as an MLflow run")

    sim = with_db(sub.add_parser("simulate", help="answer all open assignments with SIMULATED votes"))
    sim.add_argument("--name", default=None)


def _study(session, name: str | None):
    from .db import Study

    q = session.query(Study).order_by(Study.id)
    study = q.filter_by(name=name).first() if name else q.first()
    if study is None:
        raise InputError("study", f"no study {name or ''} in the database".replace("  ", " "))
    return study


def _create(args, cfg, base_url: str) -> None:
    from .db import open_db
    from .manifest import create_study, read_manifest

    raw = args.annotators or str(cfg.study.annotators)
    annotators = int(raw) if raw.isdigit() else [n.strip() for n in raw.split(",") if n.strip()]
    with open_db(args.db)() as s:
        study = create_study(
            s, read_manifest(args.manifest), args.media_root, annotators,
            seed=cfg.seed if args.seed is None else args.seed, annotators_per_case=cfg.study.annotators_per_case,
            name=args.name,
        )
        _print_links(study, base_url, args.db)


def _print_links(study, base_url: str, db: Path) -> None:
    print(f"study {study.name!r}: {len(study.cases)} cases, {len(study.annotators)} annotators, db {db}")
    print(f"results (owner): {base_url}/results/{study.owner_token}")
    for a in sorted(study.annotators, key=lambda a: a.name):
        print(f"  {a.name}: {base_url}/a/{a.token}  ({len(a.assignments)} cases)")


def main(args: argparse.Namespace) -> int:
    cfg = load_config(args.profile)
    cmd = args.study_command
    if cmd in ("create", "serve"):
        host = getattr(args, "host", None) or cfg.study.host
        port = getattr(args, "port", None) or cfg.study.port
        base_url = args.base_url or f"http://{host}:{port}"
        created = cmd == "create" or bool(args.manifest and not _has_study(args.db))
        if created:
            if not args.media_root:
                raise InputError(args.manifest, "--media-root is needed with --manifest")
            _create(args, cfg, base_url)
        if cmd == "serve":
            import uvicorn

            from .app import create_app

            if not _has_study(args.db):
                raise InputError(args.db, "no study in this database; pass --manifest and --media-root")
            if not created:  # remind the owner of the links after a restart
                from .db import Study, open_db

                with open_db(args.db)() as s:
                    for study in s.query(Study).order_by(Study.id):
                        _print_links(study, base_url, args.db)
            uvicorn.run(create_app(args.db, n_boot=cfg.study.bootstrap, seed=cfg.seed), host=host, port=port)
        return 0
    if cmd == "export":
        from .export import build_bundle

        generated = {}
        for item in args.generated:
            name, sep, d = item.partition("=")
            if not sep or not name or not d:
                raise InputError(item, "--generated expects NAME=DIR")
            generated[name] = Path(d)
        summary = build_bundle(args.corpus, args.out, cfg, generated)
        if summary["cases"]:
            print(f"study bundle ({summary['mode']}): {summary['cases']} cases, {summary['videos']} videos → {args.out}")
        if not generated:
            return 0
        from ..batch import Rejection, finish

        return finish("study export", [Rejection(r["file"], r["reason"]) for r in summary["rejections"]],
                      summary["generated_videos"], summary["generated_videos"] + summary["rejected"],
                      what="generated videos", verb="imported")
    from .db import open_db

    if not args.db.exists():
        raise InputError(args.db, "study database not found")
    with open_db(args.db)() as s:
        study = _study(s, args.name)
        if cmd == "simulate":
            from .simulate import simulate_answers

            n = simulate_answers(s, study, seed=cfg.seed, accuracy=cfg.study.simulated_accuracy)
            print(f"stored {n} SIMULATED answers in study {study.name!r}")
            return 0
        from .analysis import answers_frame, summarize
        from .report import metrics_dict, write_report

        summary = summarize(answers_frame(s, study), study.annotators_per_case, cfg.study.bootstrap, cfg.seed)
    paths = write_report(summary, args.out)
    if not args.no_mlflow:
        from .. import tracking

        tracking.start_stage("study_analyze", cfg, {"study": study.name, "simulated": summary["simulated"]})
        plots = [paths[k] for k in ("turing_plot", "likert_plot", "pairwise_plot", "results_md")]
        tracking.end_stage(paths["metrics"], artifacts=plots)
    t = metrics_dict(summary)["turing"]
    label = " (SIMULATED)" if summary["simulated"] else ""
    print(f"study {study.name!r}{label}: {summary['answers']} answers; fooled ≥1 of {study.annotators_per_case}: "
          f"{t['fooled_at_least_one_rate']}, accuracy {t['accuracy']} → {paths['results_md'].parent}")
    return 0


def _has_study(db: Path) -> bool:
    if not Path(db).exists():
        return False
    from .db import Study, open_db

    with open_db(db)() as s:
        return s.query(Study).first() is not None
