"""Speech for the voice-cloning stage (issue 24): every corpus voice speaking many sentences, with its phonemes.

The corpus clips are 4 s each, a handful per identity; the voice LM needs more speech per voice than that, so the
stage re-synthesises each corpus identity's own espeak-ng voice (language + variant, pitch, speed from the
manifest) on `utterances` fresh sentences of its language and as many in English. The English half is the same
person (same variant, pitch and speed) speaking English: it lets a held-out voice be cloned on English text, which
the offline recogniser (English only) can score. The identity split of the corpus is kept: held-out identities'
voices are never trained on.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np

from .sentences import sentence
from .speech import synthesize

WORD = "|"  # word-boundary token inserted before each word's phonemes


@dataclass(frozen=True)
class Voice:
    """One corpus identity's voice."""

    identity: str
    voice: str  # espeak voice+variant, e.g. 'fr+robert'
    pitch: int
    speed: int
    language: str  # corpus language code
    split: str  # train | holdout

    @property
    def english(self) -> str:
        """The same variant speaking American English (pitch and speed are kept by the caller)."""
        return "en-us+" + self.voice.split("+", 1)[1]


@dataclass
class Utterance:
    identity: str
    text: str
    language: str
    audio: np.ndarray  # float32 mono at the stage's sample rate
    phonemes: list[str]  # espeak phoneme names with WORD tokens between words


def label_seed(seed: int, *labels: str) -> list[int]:
    """A numpy seed sequence from an integer and labels, the same on every machine (crc32, not hash())."""
    return [int(seed)] + [zlib.crc32(str(x).encode()) for x in labels]


def corpus_voices(manifest) -> list[Voice]:
    """One Voice per identity of the corpus manifest (its clean clips; distractor clips may carry another voice)."""
    clean = manifest[manifest["distractor"].fillna("") == ""]
    out = []
    for ident, g in clean.groupby("identity", sort=True):
        r = g.iloc[0]
        out.append(Voice(identity=str(ident), voice=str(r["voice"]), pitch=int(r["pitch"]), speed=int(r["speed"]),
                         language=str(r["language"]), split=str(r["split"])))
    return out


def phoneme_tokens(phonemes: list[dict], words: list[float]) -> list[str]:
    """espeak's phoneme events → names with a WORD token before the first phoneme at or after each word start."""
    out: list[str] = []
    starts = sorted(words)
    j = 0
    for p in phonemes:
        while j < len(starts) and starts[j] <= p["start"] + 1e-4:
            if not out or out[-1] != WORD:
                out.append(WORD)
            j += 1
        out.append(p["ph"])
    return out


def speak(text: str, voice: str, pitch: int, speed: int, language: str, sample_rate: int, identity: str = "") -> Utterance:
    sp = synthesize(text, voice, pitch=pitch, speed=speed, sample_rate=sample_rate)
    return Utterance(identity=identity, text=text, language=language, audio=sp.audio,
                     phonemes=phoneme_tokens(sp.phonemes, sp.words))


def voice_utterances(v: Voice, n: int, seed: int, sample_rate: int, english: bool = True) -> list[Utterance]:
    """`n` sentences in the voice's own language (+ `n` in English unless the voice is English already or
    `english` is off), each a different sentence drawn from a per-identity generator."""
    rng = np.random.default_rng(label_seed(seed, "voice", v.identity))
    out = []
    for _ in range(n):
        out.append(speak(sentence(rng, v.language), v.voice, v.pitch, v.speed, v.language, sample_rate, v.identity))
        if english and not v.language.startswith("en"):
            out.append(speak(sentence(rng, "en-us"), v.english, v.pitch, v.speed, "en-us", sample_rate, v.identity))
        elif english:
            out.append(speak(sentence(rng, v.language), v.voice, v.pitch, v.speed, v.language, sample_rate, v.identity))
    return out
