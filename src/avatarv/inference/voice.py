"""Voice cloning at inference (issue 24): reference speech + text → speech in the reference's voice.

Steps: (1) check and normalise the text (refusing characters the phonemiser cannot speak, with their code point);
(2) read the reference (a wav, or any file with an audio stream such as the reference mp4) and refuse one that is
too short, silent or holds more than one speaker, each with one line naming the file; (3) text → phonemes with
espeak-ng in the chosen language; (4) the reference's most voiced `prompt_seconds` → codec tokens (the speaker
prompt); (5) the LM samples audio tokens; (6) the codec decodes them to a waveform.
All checks run before any weights load.
"""

from __future__ import annotations

import json
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import AvatarVError, InputError
from ..media.normalize import normalize_audio

# typographic variants → what espeak-ng reads the same way
_REPLACE = {"\u2018": "'", "\u2019": "'", "\u201a": "'", "\u201c": '"', "\u201d": '"', "\u201e": '"', "\u2013": "-",
            "\u2014": "-", "\u2026": "...", "\u00a0": " ", "\t": " ", "\n": " ", "\r": " "}
_PUNCT = set(".,;:!?'\"-()")
MAX_TEXT_CHARS = 400
LANGUAGES = {"en-us": "en-us", "en-gb": "en", "de": "de", "fr": "fr", "es": "es"}  # --lang → espeak voice


def normalize_text(text: str, where: str = "--text") -> str:
    """NFKC, typographic quotes/dashes/spaces made plain, whitespace collapsed; letters (any script espeak-ng reads
    as Latin: accents included), digits and . , ; : ! ? ' " - ( ) are kept. Anything else is refused, naming it."""
    t = unicodedata.normalize("NFKC", text)
    t = "".join(_REPLACE.get(c, c) for c in t)
    for i, c in enumerate(t):
        cat = unicodedata.category(c)
        ok = c == " " or c in _PUNCT or cat == "Nd" or (cat.startswith("L") and "LATIN" in unicodedata.name(c, ""))
        if not ok:
            raise InputError(where, f"unsupported character {c!r} (U+{ord(c):04X}, {unicodedata.name(c, 'unnamed')}) "
                                    f"at position {i}: only Latin letters, digits and basic punctuation can be spoken")
    t = re.sub(r"\s+", " ", t).strip()
    if not any(unicodedata.category(c).startswith("L") or c.isdigit() for c in t):
        raise InputError(where, "no words to speak (the text is empty or only punctuation)")
    if len(t) > MAX_TEXT_CHARS:
        raise InputError(where, f"text is {len(t)} characters; at most {MAX_TEXT_CHARS} per call (split it)")
    return t


def phonemize(text: str, language: str) -> list[str]:
    """espeak-ng's phonemes for `text` in `language` (with word boundaries), as in the training data."""
    from ..data.voices import speak

    if language not in LANGUAGES:
        raise InputError("--lang", f"unknown language {language!r} (known: {', '.join(LANGUAGES)})")
    return speak(text, LANGUAGES[language], 50, 160, language, 16000).phonemes


@dataclass
class Reference:
    audio: np.ndarray  # 16 kHz mono float32, the whole (cut to max_reference_s) reference
    voiced_seconds: float


def voiced_frames(audio: np.ndarray, sr: int, frame_s: float = 0.02, rel_db: float = -35.0) -> np.ndarray:
    """Boolean per 20 ms frame: RMS within `rel_db` of the loudest frame's (and above the 16-bit noise floor)."""
    n = int(sr * frame_s)
    k = len(audio) // n
    if k == 0:
        return np.zeros(0, bool)
    rms = np.sqrt((audio[: k * n].reshape(k, n).astype(np.float64) ** 2).mean(1))
    return (rms > rms.max() * 10 ** (rel_db / 20)) & (rms > 1e-3)


def read_reference(path: str | Path, min_seconds: float = 3.0, max_seconds: float = 30.0,
                   multi_speaker_similarity: float = 0.6, sample_rate: int = 16000) -> Reference:
    """A usable voice reference or a one-line InputError naming the file: too short, silent, several speakers."""
    audio, sr = normalize_audio(path, sample_rate=sample_rate)
    audio = audio[: int(max_seconds * sr)]
    if not np.isfinite(audio).all():
        raise InputError(path, "audio contains NaN/inf samples")
    peak = float(np.abs(audio).max()) if audio.size else 0.0
    if peak < 1e-3:
        raise InputError(path, f"voice reference is silent (peak amplitude {peak:.1e})")
    voiced = voiced_frames(audio, sr)
    seconds = float(voiced.sum()) * 0.02
    if seconds < min_seconds:
        raise InputError(path, f"voice reference has {seconds:.1f} s of speech ({len(audio) / sr:.1f} s in all); "
                               f"need at least {min_seconds:.0f} s (about 10 s clones best)")
    sim = speaker_consistency(audio, sr)
    if sim is not None and sim < multi_speaker_similarity:
        raise InputError(path, f"voice reference seems to hold more than one speaker (its halves' voice similarity "
                               f"{sim:.2f} < {multi_speaker_similarity}); give one person's speech")
    return Reference(audio=audio, voiced_seconds=seconds)


def speaker_consistency(audio: np.ndarray, sr: int, window_s: float = 1.6) -> float | None:
    """Lowest cosine similarity between the speaker embeddings (resemblyzer) of the reference's speech windows.

    One voice gives windows that agree (> 0.7 on the corpus voices); two people talking in turn give windows that
    don't. None when there are fewer than two windows of speech.
    """
    from ..media.speaker import voice_embedding

    n = int(window_s * sr)
    wins = [audio[i : i + n] for i in range(0, len(audio) - n + 1, n)]
    embs = [e for w in wins if voiced_frames(w, sr).mean() > 0.5 and (e := voice_embedding(w)).size]
    if len(embs) < 2:
        return None
    e = np.stack(embs)
    return float((e @ e.T).min())


def prompt_window(audio: np.ndarray, sr: int, seconds: float) -> np.ndarray:
    """The `seconds`-long stretch of the reference with the most voiced frames (the whole of a shorter one)."""
    n = int(seconds * sr)
    if len(audio) <= n:
        return audio
    v = voiced_frames(audio, sr).astype(np.float64)
    per = int(0.02 * sr)
    w = max(1, n // per)
    score = np.convolve(v, np.ones(w), "valid")
    start = int(np.argmax(score)) * per
    return audio[start : start + n]


class VoiceCloner:
    """runs/voice/final: codec + LM + phoneme vocabulary (train/voice.py save_cloner)."""

    def __init__(self, codec, lm, vocab: list[str], info: dict):
        self.codec, self.lm, self.vocab, self.info = codec.eval(), lm.eval(), vocab, info
        self.index = {p: i for i, p in enumerate(vocab)}

    @classmethod
    def load(cls, path: str | Path, device: str = "cpu") -> VoiceCloner:
        from ..models.voice_codec import VoiceCodec
        from ..models.voice_lm import VoiceLM

        path = Path(path)
        if not (path / "voice_index.json").exists():
            raise AvatarVError(f"{path}: no trained voice cloner (voice_index.json); run stage 09_voice "
                               f"(`dvc repro -s 09_voice`) or pass --voice-checkpoint DIR")
        codec = VoiceCodec.from_pretrained(str(path / "codec")).to(device)
        lm = VoiceLM.from_pretrained(str(path / "lm")).to(device)
        return cls(codec, lm, json.loads((path / "vocab.json").read_text()), json.loads((path / "voice_index.json").read_text()))

    @property
    def sample_rate(self) -> int:
        return int(self.codec.config.sample_rate)

    def phoneme_ids(self, phonemes: list[str], where: str = "--text") -> list[int]:
        from ..models.voice_lm import BOS_TEXT, EOS_TEXT

        unknown = sorted({p for p in phonemes if p not in self.index})
        if unknown:
            raise InputError(where, f"phonemes {unknown} never occur in the voice model's training speech "
                                    f"(a language or sound it was not trained on)")
        return [BOS_TEXT] + [self.index[p] for p in phonemes] + [EOS_TEXT]

    def prompt_codes(self, audio: np.ndarray) -> torch.Tensor:
        win = prompt_window(audio, self.sample_rate, float(self.info["prompt_seconds"]))
        return self.codec.encode(torch.from_numpy(win.astype(np.float32)).to(self.codec.device))[0]

    @torch.no_grad()
    def clone(self, reference: np.ndarray, phonemes: list[str], *, temperature: float = 0.7, top_k: int = 20,
              seed: int = 0, max_seconds: float | None = None) -> np.ndarray:
        """Speech (float32 at `sample_rate`) of `phonemes` in the voice of `reference` (16 kHz mono)."""
        ids = torch.tensor(self.phoneme_ids(phonemes))
        prompt = self.prompt_codes(reference)
        fr = float(self.info["frame_rate"])
        max_frames = int(round((max_seconds or float(self.info["max_audio_seconds"])) * fr))
        codes = self.lm.generate(prompt, ids, max_frames, temperature=temperature, top_k=top_k,
                                 generator=torch.Generator().manual_seed(seed), min_frames=int(0.3 * fr))
        if codes.shape[0] == 0:
            return np.zeros(0, np.float32)
        return self.codec.decode(codes[None].to(self.codec.device))[0].cpu().numpy().astype(np.float32)


def speak_text(cloner: VoiceCloner, reference: Reference, text: str, language: str = "en-us", **kw) -> np.ndarray:
    """normalize_text → phonemize → clone (the CLI's and the eval's one path)."""
    return cloner.clone(reference.audio, phonemize(normalize_text(text), language), **kw)
