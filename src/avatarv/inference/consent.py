"""Consent for a reference: who agreed that their face and voice may be animated, and when.

`avatarv consent REF --who NAME` records it beside the reference as `REF.consent.json`, bound to the file's
SHA-256, so a consent for one clip never covers an edited or swapped file. `generate`, `adapt` and `speak` refuse a
reference without one unless `--i-have-consent` is passed; every output's sidecar says which of the two it was.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import re
from pathlib import Path

from ..errors import InputError, MediaError
from ..media.atomic import atomic_path

STATEMENT = ("The person shown and heard in this reference agreed that it may be used to generate synthetic "
             "video and speech of them.")
FLAG = "--i-have-consent"
MAX_WHO = 200


def consent_path(reference: str | Path) -> Path:
    reference = Path(reference)
    return reference.with_name(reference.name + ".consent.json")


def _now() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


def _sha256(path: Path) -> str:
    import hashlib

    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def record_consent(reference: str | Path, who: str, statement: str = STATEMENT) -> dict:
    """Write the consent record for `reference` (atomically) and return it."""
    reference = Path(reference)
    if not reference.is_file():
        raise MediaError(reference, "file not found")
    who = re.sub(r"\s+", " ", str(who)).strip()
    if not who or not who.isprintable() or len(who) > MAX_WHO:
        raise InputError(reference, f"--who must name the person who consented (printable, 1-{MAX_WHO} characters)")
    rec = {"reference": reference.name, "reference_sha256": _sha256(reference), "who": who,
           "statement": statement.strip() or STATEMENT, "recorded_at": _now(), "recorded_by": "avatarv consent"}
    with atomic_path(consent_path(reference)) as tmp:
        tmp.write_text(json.dumps(rec, indent=2))
    return rec


def find_consent(reference: str | Path) -> dict | None:
    """The reference's consent record, None when there is none; a record for other bytes or an unreadable one is an
    error naming it (never silently taken as consent)."""
    reference, path = Path(reference), consent_path(reference)
    if not path.exists():
        return None
    try:
        rec = json.loads(path.read_text())
        who, sha = rec["who"], rec["reference_sha256"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise InputError(path, f"unreadable consent record ({type(e).__name__}); record it again with "
                               f"`avatarv consent {reference} --who NAME`") from None
    if sha != _sha256(reference):
        raise InputError(path, f"this consent was recorded for other content than {reference.name} (the file changed "
                               f"since); record it again with `avatarv consent {reference} --who NAME`")
    if not isinstance(who, str) or not who.strip():
        raise InputError(path, "the consent record names nobody; record it again with --who NAME")
    return rec


def require_consent(reference: str | Path, asserted: bool) -> dict:
    """What the output's sidecar records about consent; refuses a reference that has neither a record nor the flag."""
    if not Path(reference).is_file():
        raise MediaError(reference, "file not found")
    rec = find_consent(reference)
    if rec is not None:
        return {"source": "record", "who": rec["who"], "recorded_at": rec.get("recorded_at"),
                "record": str(consent_path(reference))}
    if asserted:
        return {"source": FLAG, "asserted_at": _now()}
    raise InputError(reference, f"no consent recorded for this reference: record who agreed with `avatarv consent "
                                f"{reference} --who NAME`, or pass {FLAG} if you have it")


def add_consent_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument(FLAG, dest="i_have_consent", action="store_true",
                   help="the person in the reference agreed to its use (otherwise a consent record made with "
                        "`avatarv consent REF --who NAME` must sit beside the reference)")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("reference", help="the reference video, photo or voice recording of the person")
    p.add_argument("--who", required=True, help="the name of the person who agreed (the person in the reference)")
    p.add_argument("--statement", default=STATEMENT, help="what they agreed to (default: %(default)r)")


def main(args: argparse.Namespace) -> int:
    rec = record_consent(args.reference, args.who, args.statement)
    print(f"{args.reference}: consent of {rec['who']} recorded at {rec['recorded_at']} -> "
          f"{consent_path(args.reference)}")
    return 0
