"""Cascade step 1 (seed: raw-video validation): container/stream checks from the crash-proof probe.

Rejects unreadable, corrupt or truncated files, clips without a video or audio stream, and absurd sizes or
durations, each with the measured value in the reason.
"""

from __future__ import annotations

from .checks import Check, fail, ok

NAME = "container"


def check(ctx) -> Check:
    p, c = ctx.probe, ctx.cfg
    if not p.get("ok"):
        return fail(NAME, f"unreadable: {p.get('error') or 'unknown error'}")
    decoded_frac = p["decoded_frames"] / p["declared_frames"] if p["declared_frames"] else 0.0
    duration = p["decoded_frames"] / p["fps"] if p["fps"] else p["duration_s"]
    v = dict(duration_s=duration, width=p["width"], height=p["height"], fps=p["fps"], decoded_frac=decoded_frac,
             audio_s=p["audio_s"])
    if not p["has_video"] or p["decoded_frames"] == 0:
        return fail(NAME, "no decodable video stream", **v)
    if decoded_frac < c.min_decoded_frac:
        return fail(NAME, f"truncated: decoded {decoded_frac:.2f} of declared frames < {c.min_decoded_frac}", **v)
    if not p["has_audio"] or p["audio_s"] <= 0:
        return fail(NAME, "no audio stream", **v)
    if abs(p["audio_s"] - duration) > c.max_av_duration_gap_s:
        return fail(NAME, f"truncated: audio {p['audio_s']:.2f} s vs video {duration:.2f} s", **v)
    if duration < c.min_duration_s or duration > c.max_duration_s:
        return fail(NAME, f"duration {duration:.2f} s outside [{c.min_duration_s}, {c.max_duration_s}]", **v)
    side_lo, side_hi = min(p["width"], p["height"]), max(p["width"], p["height"])
    if side_lo < c.min_side_px or side_hi > c.max_side_px:
        return fail(NAME, f"frame size {p['width']}x{p['height']} outside [{c.min_side_px}, {c.max_side_px}] px", **v)
    return ok(NAME, **v)
