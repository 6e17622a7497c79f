"""The demo's job runner: one worker thread generates queued jobs one at a time, each through the same steps as
`avatarv generate` (inference/cli.py): inputs read, the saved pipeline (loaded once, on the first job), the
face-cropped generation, the mp4 written atomically with the speech muxed, the self-check and the provenance
sidecar. A job's `progress` (0..1) and `stage` are what the page polls; a failure becomes the job's one-line
`error`.

Jobs live in memory (a restart forgets them; their files stay under the output folder): this is a local,
single-user demo, not a service.
"""

from __future__ import annotations

import queue
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import AvatarVError

# Shares of the progress bar: the denoising steps take nearly all of a generation's time; reading, alignment,
# decoding, writing and the self-check the rest.
GENERATE_FROM, GENERATE_TO = 0.05, 0.85


@dataclass
class Job:
    id: str
    reference: Path  # the uploaded files, stored under the job's folder
    speech: Path
    reference_name: str  # the names the user's files had, for messages and the sidecar's record
    speech_name: str
    out: Path  # the job's mp4; its sidecar is out.with_suffix(".json")
    state: str = "queued"  # queued | running | done | failed
    progress: float = 0.0
    stage: str = "waiting for the worker"
    error: str | None = None
    self_check: str | None = None  # the one-line self-check summary, as `avatarv generate` prints it
    summary: str | None = None  # size, frames, rate
    note: str = ""  # what the face alignment chose or could not measure, as `avatarv generate` prints it
    created: float = field(default_factory=time.time)
    seconds: float | None = None

    def status(self) -> dict:
        return {"id": self.id, "state": self.state, "progress": round(self.progress, 4), "stage": self.stage,
                "error": self.error, "self_check": self.self_check, "summary": self.summary, "note": self.note,
                "seconds": self.seconds}


class JobRunner:
    """Generates jobs on one background thread with the pipeline saved at `checkpoint` (loaded lazily, kept)."""

    def __init__(self, checkpoint: Path, *, refiner: Path | None = None, steps: int | None = None, seed: int = 0,
                 device: str = "cpu", max_queued: int = 4):
        self.checkpoint, self.steps, self.seed, self.device = Path(checkpoint), steps, seed, device
        self.refiner = None if refiner is None else Path(refiner)  # checked by the caller (inference.cli.check_refiner)
        self.max_queued = max_queued
        self.jobs: dict[str, Job] = {}
        self._queue: queue.Queue[Job | None] = queue.Queue()
        self._lock = threading.Lock()
        self._pipe = None
        self._thread = threading.Thread(target=self._work, name="avatarv-demo-worker", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------------------------------ queue
    def submit(self, job: Job) -> Job:
        with self._lock:
            waiting = sum(j.state in ("queued", "running") for j in self.jobs.values())
            if waiting >= self.max_queued:
                raise AvatarVError(f"{waiting} jobs are waiting; try again when one has finished")
            self.jobs[job.id] = job
        self._queue.put(job)
        return job

    def get(self, job_id: str) -> Job | None:
        return self.jobs.get(job_id)

    def close(self, timeout: float = 30.0) -> None:
        self._queue.put(None)
        self._thread.join(timeout)

    @staticmethod
    def new_id() -> str:
        return uuid.uuid4().hex[:16]

    # ------------------------------------------------------------------------------------------ work
    def _work(self) -> None:
        while (job := self._queue.get()) is not None:
            job.state, t0 = "running", time.monotonic()
            try:
                self._generate(job)
                job.state, job.progress, job.stage = "done", 1.0, "done"
            except AvatarVError as e:
                job.state, job.error = "failed", str(e)
            except Exception as e:  # noqa: BLE001 — the page must show why, and the worker must keep serving
                first = (str(e).strip().splitlines() or [""])[0][:200]
                job.state, job.error = "failed", f"{job.reference_name}: generation failed ({type(e).__name__}: {first})"
            job.seconds = round(time.monotonic() - t0, 2)

    def _set(self, job: Job, progress: float, stage: str) -> None:
        job.progress, job.stage = progress, stage

    def pipeline(self):
        if self._pipe is None:
            import torch

            from ..inference.pipeline import load_pipeline

            if self.device == "cpu":  # as `avatarv generate`: many small ops, extra threads only add sync cost
                torch.set_num_threads(1)
            pipe = load_pipeline(self.checkpoint)
            if self.refiner is not None:
                from ..models.refiner import load_refiner

                pipe.register_modules(refiner=load_refiner(self.refiner))
            pipe = pipe.to(self.device)
            pipe.set_progress_bar_config(disable=True)
            self._pipe = pipe
        return self._pipe

    def _generate(self, job: Job) -> None:
        import torch

        from ..diffusion.guidance import Guidance
        from ..inference.consent import require_consent
        from ..inference.inputs import read_reference, read_speech
        from ..inference.self_check import self_check
        from ..inference.sidecar import describe, mp4_tags, write_sidecar
        from ..media import probe

        # 1. inputs (checked on upload already; read again here so a job holds no frames while it waits)
        self._set(job, 0.01, "reading the inputs")
        reference = read_reference(job.reference)
        frames, out_rate = reference.frames, reference.source_rate
        audio, sr = read_speech(job.speech)

        # 2. model
        self._set(job, 0.03, "loading the model")
        pipe = self.pipeline()

        # 3. generate (face crop, the refiner if any, paste-back), 4. write atomically with the audio muxed
        self._set(job, GENERATE_FROM, "finding and aligning the face")

        def on_step(done: int, total: int) -> None:
            self._set(job, GENERATE_FROM + (GENERATE_TO - GENERATE_FROM) * done / total,
                      f"generating: step {done} of {total}")

        guidance = Guidance(audio=pipe.config.cfg_audio, reference=pipe.config.cfg_reference)
        result = pipe(frames, audio, sr, motion_reference=frames, num_inference_steps=self.steps, guidance=guidance,
                      generator=torch.Generator().manual_seed(self.seed), progress=on_step, crop="face",
                      source_name=job.reference_name)
        job.note = result.note
        self._set(job, 0.88, "writing the video")
        info = describe(checkpoint=self.checkpoint, reference=job.reference, audio=job.speech, adapter=None,
                        crop="face", fps=out_rate, self_check={}, note=result.note)
        result.save(job.out, fps=out_rate, metadata=mp4_tags(info))  # watermarked, tagged as AI-generated
        n = probe(job.out).n_frames
        h, w = result.frames.shape[1:3]
        refined = "refined" if getattr(pipe, "refiner", None) is not None else "not refined"
        job.summary = f"{w}x{h} ({refined}), {n} frames at {out_rate} fps ({n / float(out_rate):.2f} s), audio {len(audio) / sr:.2f} s"

        # 5. self-check and provenance sidecar
        self._set(job, 0.93, "self-check")
        check = self_check(result.frames, frames[0])
        job.self_check = check.summary()
        write_sidecar(job.out, {**info, "self_check": check.to_dict(), "watermark": "avatarv (media/watermark.py)",
                                "consent": {"reference": require_consent(job.reference, False)},
                                "uploaded_as": {"reference": job.reference_name, "audio": job.speech_name}})
