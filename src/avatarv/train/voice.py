"""Stage 09, voice cloning (issue 24): train the residual-VQ codec, tokenize the speech, train the voice LM.

Both phases run in the shared loop (train/loop.py: accelerate checkpoints every `checkpoint_every` steps, resume
from the newest, data order a pure function of (seed, step)), under runs/voice/codec and runs/voice/lm. The
training speech (data/voices.py) is synthesised once and cached in runs/voice/speech.pkl. The finished cloner —
codec, LM and phoneme vocabulary — is saved atomically to runs/voice/final (inference/voice.py loads it).

LM samples: a training utterance of voice v is the target (its phonemes and codec tokens); the speaker prompt is
`prompt_seconds` of v's *other* utterances (concatenated codec tokens, a random window), so the model must take
the voice from the prompt and the words from the phonemes — the cloning task itself.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from ..config import Config, StageTrainConfig, VoiceConfig
from ..data.voices import Utterance, Voice, corpus_voices, voice_utterances
from ..models.voice_codec import VoiceCodec
from ..models.voice_lm import BOS_TEXT, EOS_TEXT, PAD, SPECIALS, UNK, VoiceLM
from ..paths import CORPUS, RUNS
from .loop import step_seed, train_loop

CODEC_COMMIT = 0.25  # commitment weight (VQ-VAE's beta)


# --------------------------------------------------------------------------------------------- data
def training_speech(cfg: Config, run_dir: Path, corpus: Path = CORPUS, progress: bool = True) -> dict:
    """{"voices": [Voice], "utterances": [Utterance]} for every corpus voice (train and held-out), cached."""
    import pandas as pd

    v = cfg.voice
    cache = run_dir / "speech.pkl"
    key = {"utterances": v.utterances, "sample_rate": v.sample_rate, "seed": cfg.seed}
    if cache.exists():
        data = pickle.loads(cache.read_bytes())
        if data.get("key") == key:
            return data
    voices = corpus_voices(pd.read_parquet(corpus / "manifest.parquet"))
    utts: list[Utterance] = []
    for voice in tqdm(voices, desc="voice speech", disable=not progress, leave=False):
        utts += voice_utterances(voice, v.utterances, cfg.seed, v.sample_rate)
    data = {"key": key, "voices": voices, "utterances": utts}
    run_dir.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_suffix(".tmp")
    tmp.write_bytes(pickle.dumps(data))
    os.replace(tmp, cache)
    return data


def build_vocab(utterances: list[Utterance]) -> list[str]:
    """Specials, then every phoneme name seen in training, sorted (stable across runs)."""
    return list(SPECIALS) + sorted({p for u in utterances for p in u.phonemes} - set(SPECIALS))


def phoneme_ids(phonemes: list[str], vocab: list[str]) -> list[int]:
    index = {p: i for i, p in enumerate(vocab)}
    return [BOS_TEXT] + [index.get(p, UNK) for p in phonemes] + [EOS_TEXT]


class CodecWindows:
    """Random `codec_window_s` crops of the training speech (a pure function of the batch index)."""

    def __init__(self, audios: list[np.ndarray], window: int, batch: int, seed: int):
        self.audios, self.window, self.batch_size, self.seed = audios, window, batch, seed

    def batch(self, index: int, rank: int, world: int) -> dict:
        rng = np.random.default_rng(step_seed(self.seed, index))
        out = np.zeros((self.batch_size, self.window), np.float32)
        for b in range(self.batch_size):
            a = self.audios[int(rng.integers(len(self.audios)))]
            start = int(rng.integers(0, max(1, len(a) - self.window)))
            seg = a[start : start + self.window]
            out[b, : len(seg)] = seg
        return {"audio": torch.from_numpy(out)}


@dataclass
class LMData:
    codes: list[torch.Tensor]  # per utterance (T, n_q)
    phonemes: list[list[int]]
    speaker: list[str]
    prompt_frames: int
    max_frames: int

    def by_speaker(self) -> dict[str, list[int]]:
        out: dict[str, list[int]] = {}
        for i, s in enumerate(self.speaker):
            out.setdefault(s, []).append(i)
        return out


def speaker_prompt(codes: list[torch.Tensor], order: list[int], frames: int, rng: np.random.Generator) -> torch.Tensor:
    """`frames` codec frames from the utterances in `order` laid end to end, from a random start."""
    cat = torch.cat([codes[i] for i in order], 0)
    start = int(rng.integers(0, max(1, cat.shape[0] - frames + 1)))
    return cat[start : start + frames]


class LMBatches:
    """(prompt of the same voice's other utterances, phonemes, target codes), padded; pure function of the index."""

    def __init__(self, data: LMData, batch: int, seed: int):
        self.data, self.batch_size, self.seed = data, batch, seed
        self.groups = {s: ix for s, ix in data.by_speaker().items() if len(ix) > 1}
        self.items = [i for ix in self.groups.values() for i in ix]

    def sample(self, i: int, rng: np.random.Generator):
        d = self.data
        others = [j for j in self.groups[d.speaker[i]] if j != i]
        order = [others[k] for k in rng.permutation(len(others))[:4]]
        prompt = speaker_prompt(d.codes, order, d.prompt_frames, rng)
        return prompt, d.phonemes[i], d.codes[i][: d.max_frames]

    def batch(self, index: int, rank: int, world: int) -> dict:
        rng = np.random.default_rng(step_seed(self.seed, index))
        picks = [self.items[int(rng.integers(len(self.items)))] for _ in range(self.batch_size)]
        return collate([self.sample(i, rng) for i in picks])


def collate(samples) -> dict[str, torch.Tensor]:
    """Left-pad prompts, right-pad phonemes and codes; masks true on real positions."""
    n_q = samples[0][2].shape[1]
    b = len(samples)
    P = max(s[0].shape[0] for s in samples)
    L = max(len(s[1]) for s in samples)
    T = max(s[2].shape[0] for s in samples)
    prompt = torch.zeros(b, P, n_q, dtype=torch.long)
    pmask = torch.zeros(b, P, dtype=torch.bool)
    ph = torch.full((b, L), PAD, dtype=torch.long)
    phmask = torch.zeros(b, L, dtype=torch.bool)
    codes = torch.zeros(b, T, n_q, dtype=torch.long)
    cmask = torch.zeros(b, T, dtype=torch.bool)
    for k, (p, t, c) in enumerate(samples):
        prompt[k, P - p.shape[0] :], pmask[k, P - p.shape[0] :] = p, True
        ph[k, : len(t)], phmask[k, : len(t)] = torch.tensor(t), True
        codes[k, : c.shape[0]], cmask[k, : c.shape[0]] = c, True
    return {"prompt": prompt, "prompt_mask": pmask, "phonemes": ph, "phoneme_mask": phmask, "codes": codes,
            "code_mask": cmask}


# --------------------------------------------------------------------------------------------- models
def make_codec(v: VoiceConfig) -> VoiceCodec:
    return VoiceCodec(sample_rate=v.sample_rate, n_fft=v.n_fft, hop=v.hop, stride=v.stride,
                      channels=v.codec_channels, latent_dim=v.latent_dim, codebooks=v.codebooks,
                      codebook_size=v.codebook_size, griffin_lim_iters=v.griffin_lim_iters)


def make_lm(v: VoiceConfig, n_phonemes: int, frame_rate: float, max_phonemes: int = 128) -> VoiceLM:
    positions = int(round(v.prompt_seconds * frame_rate)) + int(round(v.max_audio_seconds * frame_rate)) + max_phonemes + 4
    return VoiceLM(n_phonemes=n_phonemes, codebooks=v.codebooks, codebook_size=v.codebook_size, hidden=v.lm_hidden,
                   layers=v.lm_layers, heads=v.lm_heads, max_positions=positions, dropout=v.lm_dropout)


def stage_train_config(v: VoiceConfig, phase: str) -> StageTrainConfig:
    if phase == "codec":
        return StageTrainConfig(steps=v.codec_steps, batch_size=v.codec_batch, lr=v.codec_lr,
                                warmup_steps=v.warmup_steps, checkpoint_every=v.checkpoint_every)
    return StageTrainConfig(steps=v.lm_steps, batch_size=v.lm_batch, lr=v.lm_lr, warmup_steps=v.warmup_steps,
                            checkpoint_every=v.checkpoint_every)


def codec_loss(model, batch, generator, step):
    recon, target, _, commit = model(batch["audio"], generator)
    rec, terms = VoiceCodec.reconstruction_loss(recon, target)
    return rec + CODEC_COMMIT * commit, {**terms, "commit": float(commit.detach())}


def lm_loss(model, batch, generator, step):
    return model.loss(batch["prompt"], batch["prompt_mask"], batch["phonemes"], batch["phoneme_mask"],
                      batch["codes"], batch["code_mask"])


def train_codec(cfg: Config, utterances: list[Utterance], run_dir: Path, progress: bool = True, **loop_kw):
    v = cfg.voice
    torch.manual_seed(cfg.seed)
    codec = make_codec(v)
    window = int(v.codec_window_s * v.sample_rate)
    source = CodecWindows([u.audio for u in utterances], window, v.codec_batch, cfg.seed)
    return train_loop(codec, codec_loss, source, stage_train_config(v, "codec"), run_dir, seed=cfg.seed,
                      device="cpu" if cfg.device == "cpu" else "auto", use_muon=False, use_ema=False,
                      progress=progress, **loop_kw)


@torch.no_grad()
def tokenize(codec: VoiceCodec, utterances: list[Utterance]) -> list[torch.Tensor]:
    codec.eval()
    dev = codec.device
    return [codec.encode(torch.from_numpy(u.audio).to(dev))[0].cpu() for u in utterances]


def train_lm(cfg: Config, data: LMData, n_phonemes: int, frame_rate: float, run_dir: Path, progress: bool = True,
             **loop_kw):
    v = cfg.voice
    torch.manual_seed(cfg.seed)
    lm = make_lm(v, n_phonemes, frame_rate)
    return train_loop(lm, lm_loss, LMBatches(data, v.lm_batch, cfg.seed), stage_train_config(v, "lm"), run_dir,
                      seed=cfg.seed, device="cpu" if cfg.device == "cpu" else "auto", use_muon=False, use_ema=False,
                      progress=progress, **loop_kw)


def save_cloner(final: Path, codec: VoiceCodec, lm: VoiceLM, vocab: list[str], info: dict) -> Path:
    """runs/voice/final = codec/ + lm/ + vocab.json + voice_index.json, written to `<final>.partial` then renamed.

    voice_index.json (not model_index.json) keeps the video leaderboard (eval/systems.py) from taking it for a
    video pipeline.
    """
    tmp = final.with_name(final.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    codec.save_pretrained(tmp / "codec")
    lm.save_pretrained(tmp / "lm")
    (tmp / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False))
    (tmp / "voice_index.json").write_text(json.dumps(info, indent=2))
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    return final


def run(cfg: Config, runs: Path = RUNS, corpus: Path = CORPUS, progress: bool = True) -> dict:
    """The whole stage: speech → codec → tokens → LM → runs/voice/final. Each phase resumes from its checkpoints."""
    v = cfg.voice
    root = runs / "voice"
    speech = training_speech(cfg, root, corpus, progress)
    voices: list[Voice] = speech["voices"]
    train_ids = {x.identity for x in voices if x.split == "train"}
    train_utts = [u for u in speech["utterances"] if u.identity in train_ids]

    codec_res = train_codec(cfg, train_utts, root / "codec", progress)
    codec = codec_res.model.eval()
    codes = tokenize(codec, train_utts)
    vocab = build_vocab(train_utts)
    fr = codec.frame_rate
    data = LMData(codes=codes, phonemes=[phoneme_ids(u.phonemes, vocab) for u in train_utts],
                  speaker=[u.identity for u in train_utts], prompt_frames=int(round(v.prompt_seconds * fr)),
                  max_frames=int(round(v.max_audio_seconds * fr)))
    lm_res = train_lm(cfg, data, len(vocab), fr, root / "lm", progress)
    info = {"kind": "avatarv-voice", "sample_rate": v.sample_rate, "frame_rate": fr, "prompt_seconds": v.prompt_seconds,
            "max_audio_seconds": v.max_audio_seconds, "train_voices": sorted(train_ids),
            "codec_steps": codec_res.state.step, "lm_steps": lm_res.state.step}
    final = save_cloner(root / "final", codec, lm_res.model.eval(), vocab, info)
    return {"final": final, "speech": speech, "codec": codec_res, "lm": lm_res, "vocab": vocab,
            "train_utterances": train_utts}
