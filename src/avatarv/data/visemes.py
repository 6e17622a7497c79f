"""Phoneme → viseme → mouth shape per video frame, with coarticulation smoothing.

Each espeak-ng phoneme mnemonic maps to a viseme class with a target (opening, width, dominance). Targets are
laid on a 1 ms timeline, blended with dominance-weighted Gaussian smoothing (neighbouring sounds shape each
other: coarticulation; bilabial closures and wide vowels dominate), then averaged over each video frame's
window. The result is the ground-truth mouth_open / mouth_width the renderer shows, so lips follow the audio
the seed's audio-to-video stage learns to sync.
"""

from __future__ import annotations

import numpy as np

# viseme: (mouth_open 0..1, mouth_width 0 round..1 spread, dominance)
VISEMES: dict[str, tuple[float, float, float]] = {
    "rest": (0.0, 0.5, 0.6),
    "PBM": (0.0, 0.5, 3.0),  # lips closed: always reached
    "FV": (0.08, 0.55, 2.0),  # lower lip to upper teeth
    "TH": (0.22, 0.55, 1.0),
    "TDNL": (0.24, 0.58, 0.7),
    "SZ": (0.14, 0.68, 1.2),
    "SH": (0.22, 0.25, 1.4),  # rounded, protruded
    "KG": (0.32, 0.52, 0.6),
    "R": (0.26, 0.3, 1.0),
    "W": (0.14, 0.08, 2.0),
    "AA": (0.95, 0.55, 1.4),
    "AE": (0.75, 0.7, 1.2),
    "EH": (0.55, 0.72, 1.0),
    "IY": (0.28, 0.92, 1.2),
    "AO": (0.72, 0.28, 1.2),
    "OW": (0.55, 0.18, 1.4),
    "UW": (0.26, 0.05, 1.6),
    "ER": (0.38, 0.42, 1.0),
    "AX": (0.42, 0.5, 0.6),
}


# First characters of espeak-ng mnemonics (case-sensitive: S = "sh", T = "th", N = "ng", O = open o, ...).
_PREFIX: tuple[tuple[str, str], ...] = (
    ("tS", "SH"), ("dZ", "SH"), ("ts", "SZ"), ("dz", "SZ"), ("aI", "AA"), ("aU", "AA"), ("eI", "EH"), ("oU", "OW"),
    ("p", "PBM"), ("b", "PBM"), ("m", "PBM"), ("f", "FV"), ("v", "FV"), ("T", "TH"), ("D", "TH"),
    ("S", "SH"), ("Z", "SH"), ("C", "SH"), ("s", "SZ"), ("z", "SZ"),
    ("t", "TDNL"), ("d", "TDNL"), ("n", "TDNL"), ("l", "TDNL"), ("J", "TDNL"),
    ("k", "KG"), ("g", "KG"), ("N", "KG"), ("x", "KG"), ("j", "KG"), ("c", "KG"), ("q", "KG"), ("h", "AX"),
    ("r", "R"), ("R", "R"), ("w", "W"), ("W", "W"),
    ("a", "AA"), ("A", "AA"), ("&", "AE"), ("e", "EH"), ("E", "EH"), ("i", "IY"), ("I", "IY"), ("y", "UW"),
    ("Y", "UW"), ("o", "OW"), ("O", "AO"), ("0", "AO"), ("u", "UW"), ("U", "UW"), ("V", "AX"), ("@", "AX"),
    ("3", "ER"), ("_", "rest"),
)


def viseme_of(ph: str) -> str:
    """Viseme class of one espeak-ng phoneme mnemonic (stress marks ignored); unknown sounds → neutral AX."""
    p = ph.strip().lstrip("'\",%=")
    for prefix, vis in _PREFIX:
        if p.startswith(prefix):
            return vis
    return "rest" if not p else "AX"


def mouth_track(phonemes: list[dict], n_frames: int, fps: int, smooth_ms: float = 28.0) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame (mouth_open, mouth_width) in [0, 1] from timed phonemes.

    Outside any phoneme the mouth rests (closed). `smooth_ms` is the coarticulation width: ~30 ms keeps the
    transitions shorter than a video frame pair while letting neighbours pull on each other.
    """
    dur_ms = int(np.ceil(n_frames / fps * 1000)) + 1
    tgt_o = np.zeros(dur_ms)
    tgt_w = np.full(dur_ms, 0.5)
    dom = np.full(dur_ms, VISEMES["rest"][2])
    for ph in phonemes:
        a, b = int(ph["start"] * 1000), int(min(ph["end"], dur_ms / 1000) * 1000)
        if b <= a:
            continue
        o, w, d = VISEMES[viseme_of(ph["ph"])]
        tgt_o[a:b], tgt_w[a:b], dom[a:b] = o, w, d
    k = np.arange(-int(3 * smooth_ms), int(3 * smooth_ms) + 1)
    g = np.exp(-0.5 * (k / smooth_ms) ** 2)
    norm = np.convolve(dom, g, mode="same")
    o = np.convolve(tgt_o * dom, g, mode="same") / norm
    w = np.convolve(tgt_w * dom, g, mode="same") / norm
    edges = np.round(np.arange(n_frames + 1) * 1000 / fps).astype(int)
    mo = np.array([o[edges[i] : max(edges[i + 1], edges[i] + 1)].mean() for i in range(n_frames)])
    mw = np.array([w[edges[i] : max(edges[i + 1], edges[i] + 1)].mean() for i in range(n_frames)])
    return np.clip(mo, 0, 1).astype(np.float32), np.clip(mw, 0, 1).astype(np.float32)
