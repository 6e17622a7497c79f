"""Leaderboard (stage 11_leaderboard): reports/leaderboard.md + .csv from stage 10_eval's scores.

Rows: the real video (upper bound), the static-frame baseline, every trained stage and ablation found under
runs/, and — separately, never mixed into a ranking — the seed's reported Avatar V figures (SyncNet 8.97,
face similarity 0.840, Q-Align 4.85), measured by HeyGen with its own models and test set ("reported, other
protocol"). Every column header names the backend that produced it; a column whose metric failed its known-answer
validation in 10_eval is marked ✗ so nobody ranks systems on it.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from ..media import atomic_path

REPORTED = {"system": "Avatar V (seed paper)", "kind": "reported, other protocol",
            "syncnet_lse_c": 8.97, "face_sim": 0.840, "qalign": 4.85}

# (aggregate key, short name, higher is better, validation key or None)
COLUMNS = [
    ("sync_conf", "Sync conf (LSE-C × offset weight, σ=3 fr)", True, "sync_conf"),
    ("sync_conf_at_zero", "Sync conf@0 raw", True, "sync_conf_at_zero"),
    ("sync_lse_c", "Sync LSE-C", True, "sync_offset"),
    ("sync_abs_offset", "abs offset (frames) ↓", False, "sync_offset"),
    ("syncnet_lse_c", "SyncNet LSE-C", True, None),
    ("face_sim", "Face sim", True, "identity"),
    ("qalign", "Q-Align", True, None),
    ("brisque", "BRISQUE ↓", False, "brisque"),
    ("piqe", "PIQE ↓", False, "piqe"),
    ("niqe", "NIQE ↓", False, "niqe"),
    ("lip_audio_corr", "Lip-audio r", True, None),
    ("mouth_sharpness", "Mouth sharpness", True, None),
    ("teeth_visibility", "Teeth visible", True, None),
    ("motion_style_sim", "Motion style sim", True, None),
    ("motion_stream_style_sim", "Motion-stream style sim", True, None),
    ("head_motion_energy", "Head motion", None, None),
    ("drift_id_sim_min", "Drift ID min", True, None),
    ("drift_delta_e_max", "Drift ΔE max ↓", False, None),
]


def validation_flags(val: dict) -> dict[str, bool]:
    q = val.get("quality", {}).get("monotone", {})
    s = val.get("sync", {})
    raw = s.get("variants", {}).get("conf_at_zero", {})
    flags = {
        # LSE-C / offset (SyncNet protocol): the known shift is found within ±1 frame, swapped audio has lower LSE-C
        "sync_offset": s.get("offset_within_1", 0) >= 0.9 and s.get("swap_lse_c", 1) < s.get("synced_lse_c", 0),
        # a delivered-sync confidence: strictly lower at every larger |shift| (each sign) and for swapped audio
        "sync_conf": bool(s.get("conf_monotone")) and bool(s.get("swap_below_synced")),
        "sync_conf_at_zero": bool(raw.get("monotone")) and bool(raw.get("swap_below_synced")),
        "identity": min(val.get("identity_corpus", {}).get("auc", 0), val.get("identity_photos", {}).get("auc", 0)) >= 0.9,
    }
    domains = val.get("quality", {}).get("domains")
    for m in ("brisque", "piqe", "niqe"):
        if domains:  # ✓ only where it passed: True if on every domain, else "(kinds; domain) ✓(domain)" for the mark
            bad = {d: [k for k, r in v["monotone"].items() if not r.get(m, False)] for d, v in domains.items()}
            if not any(bad.values()):
                flags[m] = True
            else:
                flags[m] = " ✗".join(f"({','.join(k)}; {d})" for d, k in bad.items() if k) + "".join(
                    f" ✓({d})" for d, k in bad.items() if not k)
            continue
        failed = [k for k in q if not q[k].get(m, False)]
        # True when monotone under every distortion, else the names of the distortions it failed
        flags[m] = bool(q) and (True if not failed else "(" + ",".join(failed) + ")")
    return flags


FALLBACK_BACKENDS = {"syncnet_lse_c": "syncnet-python SyncNet", "qalign": "pyiqa Q-Align",
                     "sync_conf": "avatarv-sync-expert", "sync_conf_at_zero": "avatarv-sync-expert",
                     "sync_lse_c": "avatarv-sync-expert", "sync_lse_d": "avatarv-sync-expert",
                     "sync_abs_offset": "avatarv-sync-expert"}


def _backend_tag(key: str, backends: dict) -> str:
    b = backends.get(key, "")
    if not b or b.startswith("n/a"):
        b = FALLBACK_BACKENDS.get(key, b)
    for variant in (" LSE-C x offset weight", " conf@0", " LSE-C", " LSE-D"):  # the column name says which
        b = b.replace(variant, "")
    return b.split(" (")[0]


def _header(key: str, short: str, backends: dict, flags: dict, vkey) -> str:
    tag = _backend_tag(key, backends)
    mark = "" if vkey is None else (" ✓" if flags.get(vkey) is True else f" ✗{flags.get(vkey)}" if flags.get(vkey) else " ✗")
    return f"{short} [{tag}]{mark}" if tag else f"{short}{mark}"


def build_table(eval_doc: dict) -> tuple[pd.DataFrame, dict[str, str]]:
    backends = eval_doc.get("backends", {})
    flags = validation_flags(eval_doc.get("validation", {}))
    headers = {k: _header(k, s, backends, flags, v) for k, s, _, v in COLUMNS}
    rows = []
    for name, e in eval_doc.get("systems", {}).items():
        agg = e.get("aggregate", {})
        row = {"system": name, "kind": e.get("kind", ""), "n_clips": agg.get("n_scored", 0),
               "note": e.get("error", "") or (f"{agg.get('n_failed')} clips failed" if agg.get("n_failed") else "")}
        row.update({headers[k]: agg.get(k, math.nan) for k, *_ in COLUMNS})
        rows.append(row)
    rep = {"system": REPORTED["system"], "kind": REPORTED["kind"], "n_clips": math.nan,
           "note": "HeyGen's numbers: their SyncNet, face model and Q-Align on their test set; not comparable"}
    rep.update({headers[k]: REPORTED.get(k, math.nan) for k, *_ in COLUMNS})
    rows.append(rep)
    return pd.DataFrame(rows).set_index("system"), headers


def _fmt(v) -> str:
    if isinstance(v, float):
        if math.isnan(v):
            return "—"
        return f"{v:.0f}" if v.is_integer() and abs(v) >= 1 else f"{v:.3f}"
    return str(v)


def to_markdown(table: pd.DataFrame, eval_doc: dict) -> str:
    measured = table[table["kind"] != REPORTED["kind"]]
    reported = table[table["kind"] == REPORTED["kind"]]
    cols = ["kind", "n_clips"] + [c for c in table.columns if c not in ("kind", "n_clips", "note")] + ["note"]
    cols = [c for c in cols if c in ("kind", "n_clips", "note") or measured[c].notna().any() or reported[c].notna().any()]

    def md(df):
        lines = ["| system | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
        for name, r in df.iterrows():
            lines.append(f"| {name} | " + " | ".join(_fmt(r[c]) for c in cols) + " |")
        return "\n".join(lines)

    b = eval_doc.get("benchmark", {})
    v = eval_doc.get("validation", {})
    s, ic, ip = v.get("sync", {}), v.get("identity_corpus", {}), v.get("identity_photos", {})
    out = [
        "# Leaderboard",
        "",
        f"Benchmark `{b.get('version')}` ({b.get('n_cases')} cases, fingerprint `{b.get('fingerprint')}`): {b.get('rule')}.",
        (f"Profile `{eval_doc.get('profile')}`. Column headers name the backend in brackets; ✓/✗ = the metric passed/failed "
         "its known-answer validation in stage 10_eval, ✗(kinds) naming the distortions it failed (do not rank on ✗ "
         "columns). ↓ = lower is better; — = not run (weights not supplied) or not applicable."),
        "",
        "## Measured on this benchmark",
        "",
        md(measured),
        "",
        "## Reported, other protocol (not comparable; shown for orientation only)",
        "",
        md(reported),
        "",
        "## Metric validation (stage 10_eval)",
        "",
        (f"- Sync expert: offset within ±1 frame on {s.get('offset_within_1', math.nan):.0%} of shifted held-out clips "
         f"(exact {s.get('offset_exact', math.nan):.0%}); LSE-C synced {s.get('synced_lse_c', math.nan):.3f} vs swapped "
         f"audio {s.get('swap_lse_c', math.nan):.3f}."),
        *[f"- Sync confidence `{name}`{' (ranked: Sync conf column)' if name == s.get('conf_variant') else ''}: "
          f"strictly falling at every larger |shift| on each side: {d.get('monotone')}; swapped audio "
          f"{d.get('swap', math.nan):.3f} vs synced {d.get('synced', math.nan):.3f} "
          f"(by |shift|: {', '.join(f'{k}: {c:.3f}' for k, c in d.get('by_abs_shift', {}).items())})."
          for name, d in s.get("variants", {}).items()],
        (f"- Identity: ROC AUC same vs different person {ic.get('auc', math.nan):.3f} on corpus clips across scenes "
         f"({ic.get('n_pairs')} pairs), {ip.get('auc', math.nan):.3f} on {ip.get('n_people')} real package photos "
         "(same = augmented views of one photo)."),
        "- Quality (worse at every step of blur / noise / JPEG), per domain: "
        + " ".join(f"{dom} ({d.get('n_images')} images, {', '.join(d.get('sizes', []))}): "
                   + "; ".join(f"{k}: " + ", ".join(f"{m} {'✓' if ok else '✗'}" for m, ok in r.items())
                               for k, r in d["monotone"].items()) + "."
                   for dom, d in (v.get("quality", {}).get("domains")
                                  or {"corpus": {"monotone": v.get("quality", {}).get("monotone", {})}}).items()),
        "",
    ]
    return "\n".join(out)


def write_leaderboard(eval_doc: dict, md_path: Path, csv_path: Path) -> pd.DataFrame:
    table, _ = build_table(eval_doc)
    for path, text in ((md_path, to_markdown(table, eval_doc)), (csv_path, table.to_csv())):
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            Path(tmp).write_text(text)
    return table


def flat_numbers(table: pd.DataFrame, headers: dict[str, str]) -> dict[str, float]:
    """Every measured number as `system.metric` (MLflow-safe keys) for the stage's metrics JSON."""
    inv = {h: k for k, h in headers.items()}
    out = {}
    for name, r in table.iterrows():
        key = "".join(ch if ch.isalnum() or ch in "._-" else "_" for ch in str(name))
        for h, k in inv.items():
            val = r.get(h)
            if isinstance(val, (int, float)) and not math.isnan(float(val)):
                out[f"{key}.{k}"] = float(val)
    return out
