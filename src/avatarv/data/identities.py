"""Identities of the embedded corpus: a face (photo or procedural), a voice and a motion style each.

Photo identities are the faces in packaged sample photos (portraits.py). Procedural identities are new faces
made from them the way a morphable face model makes faces: blend two donor faces on a randomly reshaped
landmark geometry (face width, jaw length, eye size, nose, mouth), then change skin tone and hair colour and
maybe add glasses or a beard. They stay photo-like, so real detectors find them, yet they are new people.
Every identity also gets its own espeak-ng voice (language, variant, pitch, speed) and motion style: the seed's
"identity + voice + personality" triple that the personality SFT and voice stages rely on.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field

import cv2
import numpy as np

from .motion_style import MotionStyle, draw_style
from .portraits import TEX, Portrait, photo_portraits
from .render import close_mouth, texture_rgba, warp

# config language code → espeak-ng voice file name
ESPEAK_VOICE = {"en-us": "en-us", "en-gb": "en", "de": "de", "fr": "fr", "es": "es", "it": "it", "nl": "nl", "pt": "pt"}
VARIANTS = ("m1", "m2", "m3", "m4", "m5", "m6", "m7", "f1", "f2", "f3", "f4", "f5", "Alex", "Andy", "Annie",
            "adam", "anika", "benjamin", "caleb", "david", "edward", "linda", "michel", "paul", "robert", "steph")
HAIR = {"black": (25, 22, 22), "dark_brown": (60, 40, 30), "brown": (110, 75, 45), "auburn": (140, 60, 30),
        "blonde": (205, 170, 110), "grey": (160, 160, 160), "white": (225, 222, 215), "red": (170, 70, 40)}


@dataclass
class Identity:
    identity: str  # 'id007'
    source: str  # 'photo:<name>' | 'procedural'
    portrait: Portrait
    language: str
    voice: str  # espeak voice+variant
    pitch: int
    speed: int
    style: MotionStyle
    teeth_rgb: tuple[int, int, int]
    tongue_rgb: tuple[int, int, int]
    recipe: dict = field(default_factory=dict)  # how a procedural face was made (donors, edits)


def stable_seed(*parts) -> int:
    """A 63-bit seed from any labels, the same on every machine and Python (unlike hash())."""
    h = hashlib.sha256("/".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(h[:8], "little") >> 1


# --------------------------------------------------------------------------------------------- procedural faces
def _reshape(lm: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    """Random but plausible geometry edits of a neutral 68-point shape (canonical frame).

    Face recognisers weigh the configuration of eyes, nose and mouth most, so those move the most: eye spacing,
    eye size, nose length and width, mouth height and width, plus the outline (face width, jaw length, chin).
    """
    lm = lm.astype(np.float64).copy()
    e = {
        "face_width": rng.uniform(0.88, 1.14), "jaw_length": rng.uniform(0.9, 1.12), "chin_width": rng.uniform(0.85, 1.18),
        "eye_spacing": rng.uniform(-0.03, 0.03), "eye_size": rng.uniform(0.85, 1.2), "nose_length": rng.uniform(-0.04, 0.05),
        "nose_width": rng.uniform(0.85, 1.25), "mouth_width": rng.uniform(0.85, 1.18), "mouth_height": rng.uniform(-0.025, 0.03),
        "brow_height": rng.uniform(-0.03, 0.03),
    }
    cx = lm[27:36, 0].mean()
    eye_y = lm[36:48, 1].mean()
    lm[0:17, 0] = cx + (lm[0:17, 0] - cx) * e["face_width"]
    lm[2:15, 1] = eye_y + (lm[2:15, 1] - eye_y) * e["jaw_length"]
    lm[48:68, 1] = eye_y + (lm[48:68, 1] - eye_y) * (1 + (e["jaw_length"] - 1) * 0.6)
    lm[5:12, 0] = cx + (lm[5:12, 0] - cx) * e["chin_width"]
    for a, b, sign in ((36, 42, -1), (42, 48, 1)):
        c = lm[a:b].mean(0)
        lm[a:b] = c + (lm[a:b] - c) * e["eye_size"]
        lm[a:b, 0] += sign * e["eye_spacing"] * TEX
        brow = slice(17, 22) if sign < 0 else slice(22, 27)
        lm[brow, 0] += sign * e["eye_spacing"] * TEX * 0.8
    lm[30:36, 1] += e["nose_length"] * TEX
    nc = lm[31:36, 0].mean()
    lm[31:36, 0] = nc + (lm[31:36, 0] - nc) * e["nose_width"]
    mc = lm[48:68].mean(0)
    lm[48:68, 0] = mc[0] + (lm[48:68, 0] - mc[0]) * e["mouth_width"]
    lm[48:68, 1] += e["mouth_height"] * TEX
    lm[17:27, 1] += e["brow_height"] * TEX
    return lm.astype(np.float32), {k: round(float(v), 4) for k, v in e.items()}


def _face_mask(lm: np.ndarray) -> np.ndarray:
    """Soft mask of the skin: landmark hull raised over the forehead."""
    pts = lm[:27].astype(np.float64).copy()
    h = lm[8, 1] - lm[17:27, 1].min()
    pts[17:27, 1] -= 0.25 * h
    m = np.zeros((TEX, TEX), np.float32)
    cv2.fillConvexPoly(m, np.round(cv2.convexHull(pts.astype(np.float32)) * 16).astype(np.int32), 1.0, cv2.LINE_AA, 4)
    return cv2.GaussianBlur(m, (0, 0), 4)


def _recolour(rgb: np.ndarray, mask: np.ndarray, target_rgb, strength: float, keep_l: float) -> np.ndarray:
    """Move the masked region's chroma (and partly its lightness) towards a target colour in Lab."""
    lab = cv2.cvtColor(rgb.astype(np.uint8), cv2.COLOR_RGB2LAB).astype(np.float32)
    tgt = cv2.cvtColor(np.uint8([[target_rgb]]), cv2.COLOR_RGB2LAB).astype(np.float32)[0, 0]
    w = (mask * strength)[..., None]
    m = mask > 0.5
    mean = lab[m].mean(0) if m.any() else lab.reshape(-1, 3).mean(0)
    new = lab.copy()
    new[..., 0] = lab[..., 0] + (tgt[0] - mean[0]) * (1 - keep_l)
    new[..., 1:] = lab[..., 1:] - mean[1:] + tgt[1:]
    out = lab * (1 - w) + new * w
    return cv2.cvtColor(np.clip(out, 0, 255).astype(np.uint8), cv2.COLOR_LAB2RGB)


SKIN = [(255, 219, 185), (241, 194, 155), (224, 172, 125), (198, 134, 96), (160, 104, 70), (120, 76, 50), (92, 58, 40)]


def procedural_portrait(name: str, donors: tuple[Portrait, ...], rng: np.random.Generator) -> tuple[Portrait, dict]:
    """A new face: two donors morphed onto a reshaped geometry, then re-skinned, re-haired and accessorised."""
    a, b = donors
    w = float(rng.uniform(0.3, 0.7))
    base = close_mouth((1 - w) * a.landmarks + w * b.landmarks)
    shape, edits = _reshape(base, rng)
    texs = []
    for d in (a, b):
        src = np.concatenate([d.landmarks, _ring()]).astype(np.float64)
        dst = np.concatenate([shape, _ring()]).astype(np.float64)
        texs.append(warp(texture_rgba(d), src, dst, TEX))
    tex = (1 - w) * texs[0] + w * texs[1]
    rgb = np.clip(tex[..., :3], 0, 255).astype(np.uint8)
    alpha = np.clip(np.maximum(texs[0][..., 3], texs[1][..., 3]), 0, 1).astype(np.float32)
    face = _face_mask(shape)
    skin = SKIN[int(rng.integers(len(SKIN)))]
    rgb = _recolour(rgb, face, skin, float(rng.uniform(0.6, 0.95)), keep_l=0.35)
    hair_name = list(HAIR)[int(rng.integers(len(HAIR)))]
    hair_mask = np.clip(alpha - face * 1.5, 0, 1)
    rgb = _recolour(rgb, hair_mask, HAIR[hair_name], 0.9, keep_l=0.2)
    recipe = {"donors": [a.name, b.name], "blend": round(w, 3), "skin": list(skin), "hair": hair_name, **edits}
    if rng.uniform() < 0.2:  # glasses: thin frames around both eyes
        col = tuple(float(v) for v in rng.choice([[20, 20, 20], [90, 60, 30], [150, 150, 160]]))
        for s, e in ((36, 42), (42, 48)):
            c = shape[s:e].mean(0)
            r = np.linalg.norm(shape[s + 3] - shape[s]) * 0.85
            cv2.ellipse(rgb, (int(c[0] * 16), int(c[1] * 16)), (int(r * 16), int(r * 0.72 * 16)), 0, 0, 360, col, 2, cv2.LINE_AA, 4)
        lt, rt = shape[39:40].mean(0), shape[42:43].mean(0)
        cv2.line(rgb, (int(lt[0] * 16), int(lt[1] * 16)), (int(rt[0] * 16), int(rt[1] * 16)), col, 2, cv2.LINE_AA, 4)
        recipe["glasses"] = True
    if rng.uniform() < 0.25:  # beard/stubble: darken chin and jaw below the mouth with hair colour
        m = np.zeros((TEX, TEX), np.float32)
        jaw = shape[3:14].astype(np.float64)
        poly = np.concatenate([jaw, shape[[54, 55, 56, 57, 58, 59, 48]].astype(np.float64) + [0, 2]])
        cv2.fillPoly(m, [np.round(poly * 16).astype(np.int32)], 1.0, cv2.LINE_AA, 4)
        m = cv2.GaussianBlur(m, (0, 0), 3) * float(rng.uniform(0.4, 0.85))
        grain = rng.uniform(0.7, 1.0, size=(TEX, TEX)).astype(np.float32)
        rgb = (rgb * (1 - m[..., None] * grain[..., None]) + np.array(HAIR[hair_name]) * (m * grain)[..., None]).astype(np.uint8)
        recipe["beard"] = True
    skin_col = 0.5 * np.array(skin, np.float32) + 0.5 * np.median(rgb[face > 0.9].reshape(-1, 3), 0)
    return Portrait(name, rgb, alpha, shape, skin_col.astype(np.float32)), recipe


def _ring() -> np.ndarray:
    from .render import anchor_ring

    return anchor_ring()


# --------------------------------------------------------------------------------------------- identities
def build_identities(n: int, seed: int, languages: list[str]) -> list[Identity]:
    """`n` identities: every photo face first (in file order), then procedural faces; all seeded from `seed`."""
    photos = list(photo_portraits())
    out: list[Identity] = []
    for i in range(n):
        rng = np.random.default_rng(stable_seed(seed, "identity", i))
        name = f"id{i:03d}"
        if i < len(photos):
            portrait, source, recipe = photos[i].copy(), f"photo:{photos[i].name}", {}
        else:
            j, k = rng.choice(len(photos), size=2, replace=False)
            portrait, recipe = procedural_portrait(name, (photos[j], photos[k]), rng)
            source = "procedural"
        lang = languages[int(rng.integers(len(languages)))]
        variant = VARIANTS[int(rng.integers(len(VARIANTS)))]
        teeth = tuple(int(v) for v in np.array([236, 232, 220]) - rng.uniform(0, 25) * np.array([0.3, 0.6, 1.4]))
        tongue = tuple(int(v) for v in np.array([196, 92, 98]) + rng.uniform(-15, 15, 3))
        out.append(Identity(
            identity=name, source=source, portrait=portrait, language=lang,
            voice=f"{ESPEAK_VOICE.get(lang, lang)}+{variant}", pitch=int(rng.integers(20, 80)),
            speed=int(rng.integers(135, 195)), style=draw_style(rng), teeth_rgb=teeth, tongue_rgb=tongue, recipe=recipe,
        ))
    return out


def recipe_json(ident: Identity) -> str:
    return json.dumps(ident.recipe, sort_keys=True)
