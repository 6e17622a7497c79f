"""The pipeline's headline numbers in one flat metrics file (reports/summary.json), so `dvc metrics show` is a table a
person can read: a few figures per stage, picked from the stages' own metrics files, each under the stage's name.

The stage files keep every detail (per-step curves go to CSV for `dvc plots`); a figure whose stage has not run, or
whose key a stage no longer writes, is left out and listed under `missing`, never guessed.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

# (section, name, stage report folder, path in that stage's metrics.json). A path is dotted keys; `list[k=v]`
# picks the element of a list of records whose field k equals v; a whole path that is itself a key (the
# leaderboard's flat "sft.sync_conf") is taken as it is.
LEADERBOARD_SYSTEMS = ("real_video", "static_frame", "sft", "distill_dmd", "rlhf_grpo", "rlhf_dpo", "refiner")  # flat_numbers keys
LEADERBOARD_METRICS = ("sync_conf", "face_sim", "brisque", "motion_style_sim")
SPEC: tuple[tuple[str, str, str, str], ...] = (
    ("corpus", "clips", "00_corpus", "clips"),
    ("corpus", "identities", "00_corpus", "identities"),
    ("corpus", "hours", "00_corpus", "hours"),
    ("curate", "kept", "01_curate", "n_kept"),
    ("curate", "identity_purity", "01_curate", "identity_purity"),
    ("curate", "pair_precision", "01_curate", "pair_precision"),
    ("vae", "psnr", "02_vae", "psnr"),
    ("vae", "face_psnr", "02_vae", "face_psnr"),
    ("t2v", "val_improvement", "03_t2v_pretrain", "val_improvement"),
    ("a2v", "val_improvement", "04_a2v_pretrain", "val_improvement"),
    ("a2v", "sync_gap", "04_a2v_pretrain", "sync_gen_sync_gap"),
    ("sft", "lip_sync", "05_personality_sft", "methods.full.lip_sync"),
    ("sft", "id_margin", "05_personality_sft", "methods.full.id_margin"),
    ("distill", "nfe_ratio", "06_distill", "dmd.nfe_ratio"),
    ("rlhf", "grpo_heldout_sync_change", "07_rlhf", "grpo.reward_hacking.sync.heldout_change"),
    ("rlhf", "dpo_heldout_sync_change", "07_rlhf", "dpo.reward_hacking.sync.heldout_change"),
    ("refiner", "psnr", "08_refiner", "comparison[system=refiner].psnr"),
    ("refiner", "psnr_bicubic", "08_refiner", "comparison[system=bicubic].psnr"),
    ("voice", "speaker_sim_own", "09_voice", "gen.sim_own"),
    ("voice", "speaker_sim_others_max", "09_voice", "gen.sim_others_max"),
    ("voice", "own_beats_every_other", "09_voice", "gen.own_beats_every_other"),
    ("voice", "cases", "09_voice", "cases"),
    ("voice", "wer", "09_voice", "gen.wer"),
    ("study", "cases", "12_study_export", "bundle.cases"),
    ("real_faces", "base_face_found", "13_real_faces", "summary[kind=held-out synthetic,system=base].face_found_mean"),
    ("real_faces", "adapted_face_found", "13_real_faces",
     "summary[kind=held-out synthetic,system=adapted].face_found_mean"),
    ("real_faces", "adapt_seconds_cpu", "13_real_faces", "adapt_seconds_cpu_mean"),
    *((f"leaderboard.{system}", metric, "11_leaderboard", f"{system}.{metric}")
      for system in LEADERBOARD_SYSTEMS for metric in LEADERBOARD_METRICS),
)
_SELECT = re.compile(r"^(?P<key>[^\[]+)\[(?P<conds>[^\]]+)\]$")


def lookup(doc, path: str):
    """The value at `path` in `doc` (see SPEC), or KeyError naming the part that is not there."""
    if isinstance(doc, dict) and path in doc:
        return doc[path]
    head, _, rest = path.partition(".")
    m = _SELECT.match(head)
    if m:
        conds = dict(c.split("=", 1) for c in m["conds"].split(","))
        rows = [r for r in doc.get(m["key"], []) if all(str(r.get(k)) == v for k, v in conds.items())]
        if len(rows) != 1:
            raise KeyError(f"{head}: {len(rows)} matching records")
        value = rows[0]
    elif isinstance(doc, dict) and head in doc:
        value = doc[head]
    else:
        raise KeyError(head)
    return lookup(value, rest) if rest else value


def build_summary(reports: Path) -> dict:
    summary: dict[str, dict] = {}
    missing: list[str] = []
    docs: dict[str, dict | None] = {}
    for section, name, stage, path in SPEC:
        if stage not in docs:
            f = reports / stage / "metrics.json"
            docs[stage] = json.loads(f.read_text()) if f.exists() else None
        try:
            if docs[stage] is None:
                raise KeyError(f"{stage}/metrics.json")
            value = lookup(docs[stage], path)
        except KeyError:
            missing.append(f"{section}.{name} ({stage}: {path})")
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            missing.append(f"{section}.{name} ({stage}: {path} is not a number)")
            continue
        summary.setdefault(section, {})[name] = round(float(value), 4) if isinstance(value, float) else value
    return {**summary, "missing": missing}


def write_summary(reports: Path, out: Path) -> dict:
    from ..media.atomic import atomic_path

    doc = build_summary(reports)
    with atomic_path(out) as tmp:
        tmp.write_text(json.dumps(doc, indent=1))
    return doc
