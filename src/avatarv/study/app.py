"""The annotation web app (FastAPI): invite links, inline videos, validated votes, the owner's results page.

Routes:
  GET  /a/<token>                          the annotator's next assigned case (or a thank-you page)
  POST /a/<token>/answer                   one vote (form fields: case, choice | six Likert scores) → 303 to next
  GET  /a/<token>/video/<case uid>/<side>  a video of one of the annotator's own cases, from the media root only
  GET  /results/<owner token>              live analysis; /results/<owner token>/answers.csv the raw answers
Video URLs are opaque (case uid + side), so neither file names nor paths can tell an annotator which side is real,
and no URL takes a file path: path traversal has nothing to act on, and stored paths are re-checked to resolve
inside the media root before a byte is sent. All state is in SQLite, so a restart loses nothing.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import parse_qs

import pandas as pd
from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from .analysis import answers_frame, summarize
from .answers import (
    Refusal,
    annotator_for,
    media_path,
    next_assignment,
    progress,
    record_answer,
    study_for_owner,
)
from .db import DIMENSION_LABELS, DIMENSIONS, open_db
from .templates import render

MAX_FORM_BYTES = 16_384
MEDIA_TYPES = {".mp4": "video/mp4", ".webm": "video/webm"}


def _pct(x: float) -> str:
    return "–" if math.isnan(x) else f"{100 * x:.1f} %"


def create_app(db_path: str | Path, *, n_boot: int = 1000, seed: int = 0) -> FastAPI:
    """The app over the study database at `db_path` (created if missing; studies are added by `study create`)."""
    Session = open_db(db_path)
    app = FastAPI(title="Avatar V human study", docs_url=None, redoc_url=None, openapi_url=None)

    @app.middleware("http")
    async def _headers(request: Request, call_next):
        response = await call_next(request)
        # Tokens live in URLs: never leak them through Referer, never cache pages holding them.
        response.headers["Referrer-Policy"] = "no-referrer"
        response.headers["X-Content-Type-Options"] = "nosniff"
        if response.headers.get("content-type", "").startswith("text/"):
            response.headers["Cache-Control"] = "no-store"
        return response

    def refused(r: Refusal, back: str | None = None) -> HTMLResponse:
        return HTMLResponse(render("error.html", message=r.message, back=back), status_code=r.status)

    @app.get("/", response_class=HTMLResponse)
    def index() -> HTMLResponse:
        return HTMLResponse(render("error.html", message="Open the invite link you were given.", back=None))

    @app.get("/favicon.ico")
    def favicon() -> Response:
        return Response(status_code=204)

    @app.get("/a/{token}", response_class=HTMLResponse)
    def annotate(token: str) -> HTMLResponse:
        with Session() as s:
            try:
                ann = annotator_for(s, token)
            except Refusal as r:
                return refused(r)
            done, total = progress(s, ann)
            asg = next_assignment(s, ann)
            if asg is None:
                return HTMLResponse(render("done.html", annotator=ann.name, total=total))
            if asg.shown_at is None:
                asg.shown_at = datetime.now(UTC)
                s.commit()
            case = asg.case
            return HTMLResponse(render(
                "annotate.html", annotator=ann.name, token=token, case=case, done=done, total=total,
                dimensions=DIMENSIONS, labels=DIMENSION_LABELS,
                video_url=lambda side: f"/a/{token}/video/{case.uid}/{side}",
            ))

    def _record(token: str, form: dict[str, list[str]]) -> None:
        with Session() as s:
            record_answer(s, token, form)

    @app.post("/a/{token}/answer")
    async def answer(token: str, request: Request) -> Response:
        back = f"/a/{token}"
        try:
            if not request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
                raise Refusal(415, "answers are sent as an HTML form")
            body = await request.body()
            if len(body) > MAX_FORM_BYTES:
                raise Refusal(413, "form too large")
            try:
                form = parse_qs(body.decode("utf-8"), keep_blank_values=True, strict_parsing=False)
            except UnicodeDecodeError:
                raise Refusal(400, "form is not UTF-8") from None
            await run_in_threadpool(_record, token, form)
        except Refusal as r:
            return refused(r, None if r.message == "unknown invite token" else back)
        return RedirectResponse(back, status_code=303)

    @app.get("/a/{token}/video/{case_uid}/{side}")
    def video(token: str, case_uid: str, side: str) -> Response:
        with Session() as s:
            try:
                path = media_path(s, token, case_uid, side)
            except Refusal as r:
                return Response(r.message, status_code=r.status, media_type="text/plain")
        return FileResponse(path, media_type=MEDIA_TYPES.get(path.suffix.lower(), "application/octet-stream"))

    def _results(owner_token: str):
        with Session() as s:
            study = study_for_owner(s, owner_token)
            df = answers_frame(s, study)
            ann_rows = []  # every annotator, also those without Turing cases or answers yet
            for ann in sorted(study.annotators, key=lambda a: a.name):
                done, total = progress(s, ann)
                ann_rows.append({"name": ann.name, "done": done, "total": total})
            expected = sum(len(c.assignments) for c in study.cases)
            return study, df, ann_rows, expected

    @app.get("/results/{owner_token}", response_class=HTMLResponse)
    def results(owner_token: str) -> HTMLResponse:
        try:
            study, df, ann_rows, expected = _results(owner_token)
        except Refusal as r:
            return refused(r)
        s = summarize(df, study.annotators_per_case, n_boot, seed)
        acc = s["annotators"].set_index("annotator")
        for row in ann_rows:
            got = acc.loc[row["name"]] if row["name"] in acc.index else None
            for k in ("accuracy", "ci_low", "ci_high", "median_seconds"):
                row[k] = float(got[k]) if got is not None else float("nan")
        likert: dict[str, dict] = {}
        for r in s["likert"].itertuples():
            likert.setdefault(r.system, {})[r.dimension] = r
        return HTMLResponse(render(
            "results.html", study=study, s=s, expected=expected, n_boot=n_boot, annotators=ann_rows,
            likert=likert, pairwise=list(s["pairwise"].itertuples()), dimensions=DIMENSIONS,
            labels=DIMENSION_LABELS, pct=_pct,
        ))

    @app.get("/results/{owner_token}/answers.csv")
    def answers_csv(owner_token: str) -> Response:
        try:
            _study, df, _rows, _expected = _results(owner_token)
        except Refusal as r:
            return refused(r)
        return Response(pd.DataFrame(df).to_csv(index=False), media_type="text/csv")

    return app
