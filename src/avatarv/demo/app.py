"""The demo web app (FastAPI): upload a reference video/photo and speech, follow the generation, watch and download
the result (issue 22: a local demo of the product).

Routes:
  GET  /                        the upload page
  POST /upload/<kind>?name=F    one file as the raw request body (kind: reference | speech); checked at once
                                (size, type, decodes, a face / audible speech) → {"upload": id} or a one-line error
  POST /jobs                    {"reference": id, "speech": id, "consent": true, "who": NAME}
                                → {"job": id, "url": "/jobs/<id>"}; the consent is recorded beside the job's
                                reference (inference/consent.py) and in the result's sidecar
  GET  /jobs/<id>               progress (polling /jobs/<id>/status), then the video, download link and self-check
  GET  /jobs/<id>/status        {"state", "progress", "stage", "error", "self_check", ...}
  GET  /jobs/<id>/video | /download | /sidecar.json   the result mp4 (inline / as attachment) and its sidecar
Every refused upload is one line naming the user's file and the problem, in the words `avatarv generate` uses
(inference/inputs.py); nothing is decoded before the size and type checks. No URL takes a path: uploads and jobs
are looked up by random ids, and files are stored under names the server chooses.
"""

from __future__ import annotations

import contextlib
import re
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path

import anyio
from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from ..errors import AvatarVError, InputError, MediaError
from ..inference.consent import STATEMENT, record_consent
from ..inference.inputs import IMAGE_SUFFIXES
from .jobs import Job, JobRunner
from .templates import render

MAX_UPLOAD_BYTES = 200 * 2**20
VIDEO_SUFFIXES = {".mp4", ".mov", ".m4v", ".mkv", ".webm", ".avi"}
AUDIO_SUFFIXES = {".wav", ".mp3", ".m4a", ".aac", ".flac", ".ogg", ".opus"}
SUFFIXES = {"reference": IMAGE_SUFFIXES | VIDEO_SUFFIXES, "speech": AUDIO_SUFFIXES | VIDEO_SUFFIXES}
WHAT = {"reference": "a video or image", "speech": "an audio or video file"}
MAX_NAME = 120


class Refused(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


@dataclass
class Upload:
    kind: str
    name: str  # the user's file name (shown in messages)
    path: Path


def display_name(name: str | None) -> str:
    """The user's file name, reduced to its last component and printable characters, for messages only."""
    name = re.sub(r"[\x00-\x1f\x7f]", "", Path(str(name or "")).name.replace("\\", "/").rsplit("/", 1)[-1])
    return name[:MAX_NAME] or "unnamed file"


def _mb(n: int) -> str:
    return f"{n / 2**20:.1f} MB"


def check_upload(kind: str, name: str, path: Path) -> str:
    """Decode an uploaded file as `avatarv generate` reads its inputs; a one-line summary, or Refused naming `name`."""
    from ..inference.cli import check_face
    from ..inference.inputs import read_reference, read_speech

    try:
        if kind == "reference":
            ref = read_reference(path)
            check_face(ref.frames, name)
            h, w = ref.frames.shape[1:3]
            return f"{w}x{h}, {len(ref.frames)} frame{'s' if len(ref.frames) > 1 else ''}"
        audio, sr = read_speech(path)
        return f"{len(audio) / sr:.2f} s at {sr} Hz"
    except (MediaError, InputError) as e:  # re-worded onto the user's name, not the stored one
        raise Refused(422, f"{name}: {e.problem}") from None
    except AvatarVError as e:
        raise Refused(422, f"{name}: {str(e).replace(str(path), '').lstrip(': ')}") from None


def create_app(checkpoint: str | Path, workdir: str | Path, *, refiner: str | Path | None = None,
               steps: int | None = None, seed: int = 0, device: str = "cpu",
               max_upload_bytes: int = MAX_UPLOAD_BYTES) -> FastAPI:
    """The demo over the saved pipeline at `checkpoint` (with the super-resolution `refiner` folder, if given);
    uploads and results are kept under `workdir`."""
    from ..inference.pipeline import is_saved_pipeline

    checkpoint, workdir = Path(checkpoint), Path(workdir)
    if not is_saved_pipeline(checkpoint):
        raise AvatarVError(f"{checkpoint}: no saved pipeline (model_index.json); pass --checkpoint DIR")
    runner = JobRunner(checkpoint, refiner=refiner, steps=steps, seed=seed, device=device)
    uploads: dict[str, Upload] = {}

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI):
        yield
        runner.close()

    app = FastAPI(title="Avatar V demo", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)
    app.state.runner, app.state.uploads = runner, uploads

    @app.middleware("http")
    async def _headers(request: Request, call_next):
        response = await call_next(request)
        response.headers["X-Content-Type-Options"] = "nosniff"
        if response.headers.get("content-type", "").startswith("text/"):
            response.headers["Cache-Control"] = "no-store"
        return response

    def refused(r: Refused) -> JSONResponse:
        return JSONResponse({"error": r.message}, status_code=r.status)

    def page_refused(status: int, message: str) -> HTMLResponse:
        return HTMLResponse(render("error.html", message=message), status_code=status)

    @app.get("/", response_class=HTMLResponse)
    def index() -> HTMLResponse:
        def accept(kind: str) -> str:
            return ",".join(sorted(SUFFIXES[kind]))

        return HTMLResponse(render(
            "index.html", checkpoint=checkpoint, max_mb=f"{max_upload_bytes / 2**20:g}", max_bytes=max_upload_bytes,
            reference_accept=accept("reference"), speech_accept=accept("speech"),
            reference_types=" ".join(sorted(SUFFIXES["reference"])), speech_types=" ".join(sorted(SUFFIXES["speech"])),
            statement=STATEMENT,
        ))

    @app.get("/favicon.ico")
    def favicon() -> Response:
        return Response(status_code=204)

    async def _receive(request: Request, name: str, dest: Path) -> None:
        """The request body into `dest`, refused as soon as it is known to pass the size limit."""
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > max_upload_bytes:
            raise Refused(413, f"{name}: file too large ({_mb(int(declared))}; the limit is {_mb(max_upload_bytes)})")
        n = 0
        async with await anyio.open_file(dest, "wb") as f:
            async for chunk in request.stream():
                n += len(chunk)
                if n > max_upload_bytes:
                    raise Refused(413, f"{name}: file too large (over the limit of {_mb(max_upload_bytes)})")
                await f.write(chunk)
        if n == 0:
            raise Refused(422, f"{name}: empty file")

    @app.post("/upload/{kind}")
    async def upload(kind: str, request: Request, name: str = "") -> JSONResponse:
        name = display_name(name)
        if kind not in SUFFIXES:
            return refused(Refused(404, f"unknown upload kind {kind!r} (reference or speech)"))
        suffix = Path(name).suffix.lower()
        uid = uuid.uuid4().hex[:16]
        folder = workdir / "uploads" / uid
        try:
            if suffix not in SUFFIXES[kind]:
                raise Refused(415, f"{name}: not {WHAT[kind]} ({suffix or 'no extension'}; accepted: "
                                   f"{' '.join(sorted(SUFFIXES[kind]))})")
            folder.mkdir(parents=True)
            path = folder / f"{kind}{suffix}"
            await _receive(request, name, path)
            summary = await run_in_threadpool(check_upload, kind, name, path)
        except Refused as r:
            shutil.rmtree(folder, ignore_errors=True)
            return refused(r)
        uploads[uid] = Upload(kind, name, path)
        return JSONResponse({"upload": uid, "name": name, "summary": summary})

    @app.post("/jobs")
    async def create_job(request: Request) -> JSONResponse:
        try:
            try:
                body = await request.json()
            except ValueError:
                raise Refused(400, "a job is a JSON object {reference, speech, consent, who}") from None
            body = body if isinstance(body, dict) else {}
            who = body.get("who")
            if body.get("consent") is not True or not isinstance(who, str) or not who.strip():
                raise Refused(422, "consent missing: name the person in the reference and confirm that they agreed")
            picked: dict[str, str] = {}
            for kind in ("reference", "speech"):
                uid = str(body.get(kind, ""))
                if uid not in uploads or uploads[uid].kind != kind:
                    raise Refused(404, f"no uploaded {kind} with that id; upload the file again")
                picked[kind] = uid
            job_id = JobRunner.new_id()
            folder = workdir / "jobs" / job_id
            folder.mkdir(parents=True)
            ref, speech = uploads[picked["reference"]], uploads[picked["speech"]]
            job = Job(id=job_id, reference=folder / ref.path.name, speech=folder / speech.path.name,
                      reference_name=ref.name, speech_name=speech.name, out=folder / f"avatarv-{job_id}.mp4")
            for uid, dest in ((picked["reference"], job.reference), (picked["speech"], job.speech)):
                up = uploads.pop(uid)  # an upload is used by one job
                shutil.move(up.path, dest)
                shutil.rmtree(up.path.parent, ignore_errors=True)
            try:
                record_consent(job.reference, who, STATEMENT)
            except AvatarVError as e:
                shutil.rmtree(folder, ignore_errors=True)
                raise Refused(422, f"{ref.name}: {getattr(e, 'problem', e)}") from None
            try:
                runner.submit(job)
            except AvatarVError as e:
                raise Refused(503, str(e)) from None
        except Refused as r:
            return refused(r)
        return JSONResponse({"job": job.id, "url": f"/jobs/{job.id}"})

    def _job(job_id: str) -> Job:
        job = runner.get(job_id)
        if job is None:
            raise Refused(404, f"no job {job_id!r} (jobs are forgotten when the demo restarts)")
        return job

    @app.get("/jobs/{job_id}", response_class=HTMLResponse)
    def job_page(job_id: str) -> HTMLResponse:
        try:
            return HTMLResponse(render("job.html", job=_job(job_id)))
        except Refused as r:
            return page_refused(r.status, r.message)

    @app.get("/jobs/{job_id}/status")
    def job_status(job_id: str) -> JSONResponse:
        try:
            return JSONResponse(_job(job_id).status())
        except Refused as r:
            return refused(r)

    def _result(job_id: str, which: str) -> Path:
        job = _job(job_id)
        if job.state != "done":
            raise Refused(409, f"job {job_id} is {job.state}; no result yet")
        return job.out if which == "video" else job.out.with_suffix(".json")

    @app.get("/jobs/{job_id}/video")
    def video(job_id: str) -> Response:
        try:
            return FileResponse(_result(job_id, "video"), media_type="video/mp4")
        except Refused as r:
            return refused(r)

    @app.get("/jobs/{job_id}/download")
    def download(job_id: str) -> Response:
        try:
            path = _result(job_id, "video")
        except Refused as r:
            return refused(r)
        return FileResponse(path, media_type="video/mp4", filename=path.name, content_disposition_type="attachment")

    @app.get("/jobs/{job_id}/sidecar.json")
    def sidecar(job_id: str) -> Response:
        try:
            return FileResponse(_result(job_id, "sidecar"), media_type="application/json")
        except Refused as r:
            return refused(r)

    return app
