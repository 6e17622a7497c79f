"""Measuring the voice cloner (issue 24): speaker similarity, intelligibility (WER), codec quality, real-time factor.

- Speaker similarity: resemblyzer (GE2E) embeddings. Each held-out voice (never trained on) is cloned from ~10 s of
  its own-language speech onto `eval_texts` English sentences; the output is compared with the centroid of that
  voice's real English speech (own) and with every other corpus voice's centroid (others). A case passes when own is
  above every other voice. The same numbers for the real speech and for its codec round trip bound what the
  cloner can reach.
- Intelligibility: word error rate of the offline CMU PocketSphinx recogniser (its bundled US-English acoustic model
  and language model, open vocabulary) against the input text; the recogniser's WER on the real (espeak) speech is
  reported beside it as its floor on this kind of voice.
- Codec: log-spectral distance (dB) over speech frames, speaker similarity and WER of the round trip.
- Real-time factor on CPU: seconds of compute per second of speech (LM and codec decoding apart), one thread.
"""

from __future__ import annotations

import functools
import re
import time

import numpy as np
import torch

from ..data.sentences import sentence
from ..data.voices import Utterance, Voice, label_seed, speak
from ..media.speaker import voice_embedding


# --------------------------------------------------------------------------------------------- recogniser
@functools.lru_cache(maxsize=1)
def _decoder():
    from pocketsphinx import Decoder

    return Decoder(samprate=16000, loglevel="FATAL")


def recogniser_available() -> str | None:
    """None when PocketSphinx can be used, else why not (the WER columns are then left empty)."""
    try:
        _decoder()
    except Exception as e:  # noqa: BLE001 - any import/model failure means: no recogniser
        return f"pocketsphinx unavailable ({type(e).__name__}: {e})"
    return None


def transcribe(audio: np.ndarray) -> str:
    """PocketSphinx's best hypothesis for 16 kHz mono float audio (decoding state reset per utterance)."""
    d = _decoder()
    pcm = (np.clip(audio, -1, 1) * 32767).astype(np.int16).tobytes()
    d.start_utt()
    d.process_raw(pcm, full_utt=True)
    d.end_utt()
    hyp = d.hyp()
    return hyp.hypstr if hyp is not None else ""


def words(text: str) -> list[str]:
    return re.sub(r"[^a-z0-9' ]", " ", text.lower()).split()


def word_errors(reference: str, hypothesis: str) -> tuple[int, int]:
    """(substitutions + deletions + insertions, reference words): Levenshtein distance over words."""
    r, h = words(reference), words(hypothesis)
    prev = list(range(len(h) + 1))
    for i in range(1, len(r) + 1):
        cur = [i] + [0] * len(h)
        for j in range(1, len(h) + 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (r[i - 1] != h[j - 1]))
        prev = cur
    return prev[-1], len(r)


def wer(pairs: list[tuple[str, str]]) -> float:
    """Corpus WER: total word errors / total reference words over (reference, hypothesis) pairs."""
    errs = [word_errors(r, h) for r, h in pairs]
    total = sum(n for _, n in errs)
    return sum(e for e, _ in errs) / total if total else float("nan")


# --------------------------------------------------------------------------------------------- cases
def reference_audio(utterances: list[Utterance], seconds: float = 10.0) -> np.ndarray:
    """About `seconds` of a voice's own-language speech (its utterances end to end, 0.3 s apart)."""
    gap = np.zeros(int(0.3 * 16000), np.float32)
    parts, total = [], 0
    for u in utterances:
        parts += [u.audio, gap]
        total += len(u.audio) + len(gap)
        if total >= seconds * 16000:
            break
    return np.concatenate(parts)[: int(seconds * 16000)]


def english_texts(identity: str, n: int, seed: int) -> list[str]:
    rng = np.random.default_rng(label_seed(seed, "voice-eval", identity))
    return [sentence(rng, "en-us") for _ in range(n)]


def speaker_centroids(voices: list[Voice], texts_per_voice: int, seed: int) -> dict[str, np.ndarray]:
    """Each voice's real English speech (fresh sentences), embedded and averaged: what 'sounds like v' means."""
    out = {}
    for v in voices:
        rng = np.random.default_rng(label_seed(seed, "voice-centroid", v.identity))
        es = [voice_embedding(speak(sentence(rng, "en-us"), v.english if not v.language.startswith("en") else v.voice,
                                    v.pitch, v.speed, "en-us", 16000).audio) for _ in range(texts_per_voice)]
        c = np.mean(es, 0)
        out[v.identity] = c / np.linalg.norm(c)
    return out


def similarity_row(audio: np.ndarray, own: str, centroids: dict[str, np.ndarray]) -> dict:
    e = voice_embedding(audio)
    if e.size == 0:
        return {"sim_own": float("nan"), "sim_others_mean": float("nan"), "sim_others_max": float("nan"),
                "closest_other": "", "own_rank": len(centroids), "own_wins": False}
    sims = {k: float(e @ c) for k, c in centroids.items()}
    others = {k: s for k, s in sims.items() if k != own}
    closest = max(others, key=others.get)
    rank = 1 + sum(s > sims[own] for s in others.values())
    return {"sim_own": sims[own], "sim_others_mean": float(np.mean(list(others.values()))),
            "sim_others_max": others[closest], "closest_other": closest, "own_rank": rank,
            "own_wins": bool(sims[own] > others[closest])}


def log_spectral_distance(codec, a: np.ndarray, b: np.ndarray) -> float:
    """RMS difference (dB) of two signals' STFT power over the frames where the first has speech."""
    n = min(len(a), len(b))
    with torch.no_grad():
        la = codec.log_magnitude(torch.from_numpy(a[:n])[None].to(codec.device))[0].cpu().numpy()
        lb = codec.log_magnitude(torch.from_numpy(b[:n].astype(np.float32))[None].to(codec.device))[0].cpu().numpy()
    db = 20 / np.log(10)
    speech = la.max(0) > la.max() - 40 / db
    d = (la[:, speech] - lb[:, speech]) * db
    return float(np.sqrt((d**2).mean(0)).mean())


def evaluate(cloner, voices: list[Voice], utterances: list[Utterance], cfg, progress: bool = True) -> dict:
    """Every held-out voice × `eval_texts` English sentences: similarity, WER, codec round trip, timings."""
    from tqdm.auto import tqdm

    from ..inference.voice import phonemize

    v = cfg.voice
    asr_missing = recogniser_available()
    centroids = speaker_centroids(voices, 3, cfg.seed)
    held = [x for x in voices if x.split == "holdout"]
    rows, timings = [], []
    cases = [(h, t) for h in held for t in english_texts(h.identity, v.eval_texts, cfg.seed)]
    for k, (h, text) in enumerate(tqdm(cases, desc="voice eval", disable=not progress, leave=False)):
        own_lang = [u for u in utterances if u.identity == h.identity and u.language == h.language]
        ref = reference_audio(own_lang, 10.0)
        real = speak(text, h.english if not h.language.startswith("en") else h.voice, h.pitch, h.speed, "en-us", 16000)
        t0 = time.perf_counter()
        gen = cloner.clone(ref, phonemize(text, "en-us"), temperature=v.temperature, top_k=v.top_k, seed=k)
        t_gen = time.perf_counter() - t0
        with torch.no_grad():
            codes = cloner.codec.encode(torch.from_numpy(real.audio).to(cloner.codec.device))
            t1 = time.perf_counter()
            rt = cloner.codec.decode(codes)[0].cpu().numpy()
            t_dec = time.perf_counter() - t1
        timings.append({"seconds": len(gen) / 16000, "clone_s": t_gen, "codec_frames": codes.shape[1], "decode_s": t_dec})
        row = {"identity": h.identity, "voice": h.voice, "pitch": h.pitch, "text": text,
               "gen_seconds": len(gen) / 16000, "real_seconds": len(real.audio) / 16000}
        for name, audio in (("gen", gen), ("real", real.audio), ("codec", rt[: len(real.audio)])):
            row.update({f"{name}_{k2}": val for k2, val in similarity_row(audio, h.identity, centroids).items()})
            if asr_missing is None:
                hyp = transcribe(audio) if audio.size else ""
                e, n = word_errors(text, hyp)
                row.update({f"{name}_hyp": hyp, f"{name}_errors": e, f"{name}_words": n})
        row["codec_lsd_db"] = log_spectral_distance(cloner.codec, real.audio, rt)
        rows.append(row)
    return {"rows": rows, "timings": timings, "asr": asr_missing or "pocketsphinx 5 (bundled en-us model)"}


def summarize(result: dict) -> dict:
    """The stage's headline numbers from evaluate()'s rows."""
    rows = result["rows"]
    out: dict = {"cases": len(rows), "voices": len({r["identity"] for r in rows}), "recogniser": result["asr"]}
    for name in ("gen", "real", "codec"):
        out[name] = {
            "sim_own": float(np.nanmean([r[f"{name}_sim_own"] for r in rows])),
            "sim_others_mean": float(np.nanmean([r[f"{name}_sim_others_mean"] for r in rows])),
            "sim_others_max": float(np.nanmean([r[f"{name}_sim_others_max"] for r in rows])),
            "own_beats_every_other": int(sum(r[f"{name}_own_wins"] for r in rows)),
            "own_beats_others_mean": int(sum(r[f"{name}_sim_own"] > r[f"{name}_sim_others_mean"] for r in rows)),
            "own_rank_mean": float(np.mean([r[f"{name}_own_rank"] for r in rows])),
        }
        if f"{name}_errors" in rows[0]:
            out[name]["wer"] = sum(r[f"{name}_errors"] for r in rows) / max(1, sum(r[f"{name}_words"] for r in rows))
    out["codec"]["lsd_db"] = float(np.mean([r["codec_lsd_db"] for r in rows]))
    t = result["timings"]
    speech = sum(x["seconds"] for x in t)
    real = sum(r["real_seconds"] for r in rows)
    out["rtf_cpu"] = {"clone": sum(x["clone_s"] for x in t) / max(speech, 1e-9),
                      "codec_decode": sum(x["decode_s"] for x in t) / max(real, 1e-9), "threads": torch.get_num_threads()}
    out["gen_seconds_over_real"] = float(np.mean([r["gen_seconds"] / r["real_seconds"] for r in rows]))
    return out
