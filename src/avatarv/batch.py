"""How every batch command ends (`avatarv eval`, `ingest`, `curate`, `study export`): the same report and exit code.

A file the batch cannot use is a rejection row in the command's own output (and the batch goes on); at the end the
command prints one line per rejected file naming the file and the reason (stderr), then how many files succeeded
(stdout). A run that handled nothing exits 1; a partial batch exits 0. Bad arguments or a missing input folder are
not batch outcomes: they stay one-line errors with exit code 2 (cli.py).
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

NOTHING_HANDLED = 1


@dataclass(frozen=True)
class Rejection:
    file: str
    reason: str


def reason_of(file: str | Path, error: BaseException | str) -> str:
    """The reason alone: a MediaError/InputError about `file` drops its leading "file: "; an error about another
    file (the reference of a generated clip, ...) keeps that file's name."""
    file = str(file)
    path, problem = getattr(error, "path", None), getattr(error, "problem", None)
    if path is not None and problem is not None:
        return problem if str(path) == file else f"{path}: {problem}"
    text = (str(error).splitlines() or [type(error).__name__])[0]
    return text[len(file) + 2 :] if text.startswith(file + ": ") else text


def finish(command: str, rejected: Iterable[Rejection], succeeded: int, total: int, *, what: str = "files",
           verb: str = "handled") -> int:
    """Print the rejections and the count line; return the command's exit code."""
    rejected = list(rejected)
    for r in rejected:
        print(f"avatarv {command}: rejected {r.file}: {r.reason}", file=sys.stderr)
    tail = f", {len(rejected)} rejected" if rejected else ""
    print(f"avatarv {command}: {succeeded} of {total} {what} {verb}{tail}")
    return 0 if succeeded else NOTHING_HANDLED
