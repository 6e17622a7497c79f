"""Speech for the embedded corpus: espeak-ng synthesis with phoneme timings read from libespeak-ng's own events.

Why libespeak-ng through ctypes rather than the `espeak-ng` binary: the library reports every phoneme with its
audio position (espeakEVENT_PHONEME), so the mouth shapes can be timed to the exact samples the listener hears —
the ground truth behind the seed's lip-sync objectives. No Python package is needed and synthesis is
deterministic (same text/voice/pitch/speed → same samples).
"""

from __future__ import annotations

import ctypes
import os
import pickle
from dataclasses import dataclass

import numpy as np

from ..media import resample

_LIB = "libespeak-ng.so.1"
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INITIALIZE_PHONEME_EVENTS = 1
_CHARS_UTF8 = 1
_POS_CHARACTER = 1
_EVENT_END_OF_LIST = 0
_EVENT_WORD = 1
_EVENT_PHONEME = 7
_PARAM_RATE, _PARAM_VOLUME, _PARAM_PITCH, _PARAM_RANGE = 1, 2, 3, 4


class _EventId(ctypes.Union):
    _fields_ = [("number", ctypes.c_int), ("name", ctypes.c_char_p), ("string", ctypes.c_char * 8)]


class _Event(ctypes.Structure):
    _fields_ = [
        ("type", ctypes.c_int),
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),
        ("length", ctypes.c_int),
        ("audio_position", ctypes.c_int),
        ("sample", ctypes.c_int),
        ("user_data", ctypes.c_void_p),
        ("id", _EventId),
    ]


_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event))


@dataclass
class Speech:
    """Synthesised speech: mono float32 audio and the phonemes with their [start, end) times in seconds."""

    audio: np.ndarray
    sample_rate: int
    phonemes: list[dict]  # {"ph": str, "start": float, "end": float}
    words: list[float]  # word start times (s)

    @property
    def duration(self) -> float:
        return len(self.audio) / self.sample_rate


class _Engine:
    """A libespeak-ng instance (one per process: the library keeps global state)."""

    def __init__(self) -> None:
        lib = ctypes.CDLL(_LIB)
        lib.espeak_Initialize.restype = ctypes.c_int
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_Synth.argtypes = [
            ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint, ctypes.c_uint,
            ctypes.POINTER(ctypes.c_uint), ctypes.c_void_p,
        ]
        self.lib = lib
        self.sample_rate = int(lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, None, _INITIALIZE_PHONEME_EVENTS))
        if self.sample_rate <= 0:
            raise RuntimeError(f"{_LIB}: espeak_Initialize failed ({self.sample_rate})")
        self._chunks: list[np.ndarray] = []
        self._events: list[tuple[int, int, str]] = []
        self._cb = _CALLBACK(self._on_audio)  # keep a reference: ctypes callbacks must outlive the C side
        lib.espeak_SetSynthCallback(self._cb)

    def _on_audio(self, wav, n, events) -> int:
        if n > 0 and wav:
            self._chunks.append(np.ctypeslib.as_array(wav, shape=(n,)).copy())
        i = 0
        while events[i].type != _EVENT_END_OF_LIST:
            e = events[i]
            if e.type == _EVENT_PHONEME:
                self._events.append((_EVENT_PHONEME, e.sample, e.id.string.decode("utf-8", "replace")))
            elif e.type == _EVENT_WORD:
                self._events.append((_EVENT_WORD, e.sample, ""))
            i += 1
        return 0

    def synth(self, text: str, voice: str, pitch: int, speed: int) -> tuple[np.ndarray, list[tuple[int, int, str]]]:
        self._chunks, self._events = [], []
        if self.lib.espeak_SetVoiceByName(voice.encode()) != 0:
            raise ValueError(f"espeak-ng: unknown voice {voice!r}")
        self.lib.espeak_SetParameter(_PARAM_RATE, int(speed), 0)
        self.lib.espeak_SetParameter(_PARAM_PITCH, int(pitch), 0)
        self.lib.espeak_SetParameter(_PARAM_RANGE, 50, 0)
        self.lib.espeak_SetParameter(_PARAM_VOLUME, 100, 0)
        data = text.encode("utf-8") + b"\0"
        buf = ctypes.create_string_buffer(data)
        self.lib.espeak_Synth(buf, len(data), 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None)
        self.lib.espeak_Synchronize()
        audio = np.concatenate(self._chunks) if self._chunks else np.zeros(0, np.int16)
        return audio, list(self._events)


def _synth_fresh(text: str, voice: str, pitch: int, speed: int) -> tuple[int, np.ndarray, list]:
    """Synthesise in a forked child with a never-used libespeak-ng.

    Why: espeak-ng keeps process-global state between utterances (the same call twice differs by a few samples,
    and espeak_Terminate + espeak_Initialize deadlocks), so the only way to make an utterance depend on its
    arguments alone — byte-determinism whatever order a worker meets its clips — is a fresh process per
    utterance. fork() costs a few ms; the parent never loads the library.
    """
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: synthesise, send, leave without running any parent clean-up
        code = 0
        try:
            os.close(r)
            try:
                eng = _Engine()
                raw, events = eng.synth(text, voice, pitch, speed)
                payload = pickle.dumps(("ok", eng.sample_rate, raw, events))
            except Exception as e:  # noqa: BLE001 - reported to the parent, which raises it
                payload = pickle.dumps(("error", str(e), None, None))
            with os.fdopen(w, "wb") as f:
                f.write(payload)
        except BaseException:  # noqa: BLE001 - a forked child must never return into the parent's code
            code = 1
        finally:
            os._exit(code)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        payload = f.read()
    os.waitpid(pid, 0)
    if not payload:
        raise RuntimeError(f"espeak-ng: synthesis process died (voice {voice!r})")
    status, sr, raw, events = pickle.loads(payload)
    if status != "ok":
        raise ValueError(sr)
    return sr, raw, events


def synthesize(text: str, voice: str, pitch: int = 50, speed: int = 160, sample_rate: int = 16000) -> Speech:
    """Speak `text` with an espeak-ng voice ('en-us+f3'), pitch 0..99 and speed in words/minute.

    Phoneme ends are the next phoneme's start (espeak reports onsets only); the last one ends with the audio.
    Pauses between words appear as gaps only where espeak emits a pause phoneme ('_:' etc.).
    """
    sr_in, raw, events = _synth_fresh(text, voice, pitch, speed)
    audio = resample(raw.astype(np.float32) / 32768.0, sr_in, sample_rate)
    dur = len(audio) / sample_rate
    ph_events = [(s / sr_in, p) for kind, s, p in events if kind == _EVENT_PHONEME]
    phonemes = []
    last = np.floor(dur * 1e4) / 1e4  # 4-decimal times that never pass the end of the audio
    for i, (start, ph) in enumerate(ph_events):
        end = ph_events[i + 1][0] if i + 1 < len(ph_events) else dur
        s0, s1 = round(start, 4), min(round(end, 4), last)
        if s1 > s0 and ph.strip():
            phonemes.append({"ph": ph.strip(), "start": s0, "end": s1})
    words = [round(s / sr_in, 4) for kind, s, _ in events if kind == _EVENT_WORD]
    return Speech(audio=audio.astype(np.float32), sample_rate=sample_rate, phonemes=phonemes, words=words)


def frame_energy(audio: np.ndarray, sample_rate: int, fps: int, n_frames: int) -> np.ndarray:
    """RMS of the audio inside each video frame's window [i/fps, (i+1)/fps): the manifest's audio_energy."""
    hop = sample_rate / fps
    out = np.zeros(n_frames, np.float32)
    for i in range(n_frames):
        seg = audio[int(round(i * hop)) : int(round((i + 1) * hop))]
        out[i] = float(np.sqrt(np.mean(seg.astype(np.float64) ** 2))) if len(seg) else 0.0
    return out
