"""The voice LM (issue 24): a causal transformer over [speaker prompt | phonemes | audio tokens].

Seed: "voice cloning from ~10 s of audio with an LLM backbone that predicts audio tokens". The backbone is a
transformers GPT-2 (`GPT2Model`, built from a config, trained from scratch: no hub weights) fed `inputs_embeds`:

    [prompt frame 1 … prompt frame P] [SPEAKER] [BOS_TEXT] [phoneme 1 … phoneme L] [EOS_TEXT] [BOS_AUDIO]
    [frame 1 … frame T]

- A prompt or audio frame's embedding is the sum of its `codebooks` code embeddings (one table per codebook), so
  a token frame is one position; the prompt is the reference's own codec tokens (VALL-E's acoustic prompt).
- SPEAKER is the mean of the prompt's frame embeddings through a small MLP: one summary of the voice that every
  later position can read at a fixed place (at tiny scale it is what carries the voice; the frames add detail).
- Each segment adds its own learned type embedding; GPT-2's learned positions cover the whole sequence.
- The output at BOS_AUDIO and at frame t predicts frame t+1: `codebooks` heads of `codebook_size + 1` classes,
  the extra class of head 0 meaning end of speech (the other heads' at the end position are ignored).

The residual codebooks of one frame are predicted together from the same hidden state (no delay pattern): at this
scale the first codebook carries most of the content, and a single pass per frame keeps generation one step per
40 ms of speech.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn

# phoneme vocabulary specials (the vocabulary itself is saved beside the model, voice/vocab.json)
PAD, BOS_TEXT, EOS_TEXT, UNK = 0, 1, 2, 3
SPECIALS = ("<pad>", "<bos_text>", "<eos_text>", "<unk>")
SEG_PROMPT, SEG_SPEAKER, SEG_TEXT, SEG_AUDIO = 0, 1, 2, 3


class VoiceLM(ModelMixin, ConfigMixin):
    @register_to_config
    def __init__(self, n_phonemes: int = 64, codebooks: int = 4, codebook_size: int = 256, hidden: int = 192,
                 layers: int = 4, heads: int = 4, max_positions: int = 512, dropout: float = 0.0):
        super().__init__()
        from transformers import GPT2Config, GPT2Model

        self.backbone = GPT2Model(GPT2Config(
            vocab_size=1, n_positions=max_positions, n_embd=hidden, n_layer=layers, n_head=heads,
            resid_pdrop=dropout, embd_pdrop=dropout, attn_pdrop=dropout, use_cache=True, bos_token_id=None,
            eos_token_id=None,
        ))
        self.code_embed = nn.ModuleList(nn.Embedding(codebook_size + 1, hidden) for _ in range(codebooks))
        self.phoneme_embed = nn.Embedding(n_phonemes, hidden)
        self.segment_embed = nn.Embedding(4, hidden)
        self.bos_audio = nn.Parameter(torch.zeros(hidden))
        self.speaker = nn.Sequential(nn.Linear(hidden, hidden), nn.GELU(), nn.Linear(hidden, hidden))
        self.code_heads = nn.Linear(hidden, codebooks * (codebook_size + 1))
        nn.init.normal_(self.bos_audio, std=0.02)

    @property
    def eos(self) -> int:
        return self.config.codebook_size

    def frame_embed(self, codes: torch.Tensor) -> torch.Tensor:
        """codes (B, T, n_q) → (B, T, hidden)."""
        return sum(self.code_embed[q](codes[..., q]) for q in range(self.config.codebooks))

    def prefix(self, prompt: torch.Tensor, prompt_mask: torch.Tensor, phonemes: torch.Tensor) -> torch.Tensor:
        """Embeddings of [prompt | SPEAKER | phonemes (BOS…EOS) | BOS_AUDIO] (B, P + 1 + L + 1, hidden).

        prompt (B, P, n_q) with prompt_mask (B, P) true on real frames (left-padded); phonemes (B, L) padded with PAD.
        """
        seg = self.segment_embed.weight
        pe = self.frame_embed(prompt)
        m = prompt_mask.unsqueeze(-1).type_as(pe)
        spk = self.speaker((pe * m).sum(1) / m.sum(1).clamp_min(1.0))[:, None]
        pe = pe * m + seg[SEG_PROMPT]
        te = self.phoneme_embed(phonemes) + seg[SEG_TEXT]
        bos = (self.bos_audio + seg[SEG_AUDIO]).expand(prompt.shape[0], 1, -1)
        return torch.cat([pe, spk + seg[SEG_SPEAKER], te, bos], 1)

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """(B, T, hidden) → (B, T, n_q, codebook_size + 1)."""
        return self.code_heads(hidden).unflatten(-1, (self.config.codebooks, self.config.codebook_size + 1))

    def forward(self, prompt, prompt_mask, phonemes, phoneme_mask, codes, code_mask):
        """Teacher-forced logits for every target frame: (B, T + 1, n_q, K + 1) (the last row predicts the end).

        Masks are true on real positions; padding is excluded from attention, so a padded batch gives each sample
        the same logits as alone.
        """
        pre = self.prefix(prompt, prompt_mask, phonemes)
        x = torch.cat([pre, self.frame_embed(codes) + self.segment_embed.weight[SEG_AUDIO]], 1)
        attn = torch.cat([prompt_mask, torch.ones_like(prompt_mask[:, :1]), phoneme_mask,
                          torch.ones_like(prompt_mask[:, :1]), code_mask], 1).long()
        pos = (attn.cumsum(1) - 1).clamp_min(0)
        h = self.backbone(inputs_embeds=x, attention_mask=attn, position_ids=pos).last_hidden_state
        return self.logits(h[:, pre.shape[1] - 1 :])

    def loss(self, prompt, prompt_mask, phonemes, phoneme_mask, codes, code_mask):
        """Cross-entropy of every target frame's codes and of the end-of-speech class after the last frame."""
        logits = self.forward(prompt, prompt_mask, phonemes, phoneme_mask, codes, code_mask)
        b, t = codes.shape[:2]
        lengths = code_mask.sum(1)
        target = torch.full((b, t + 1, self.config.codebooks), -100, dtype=torch.long, device=codes.device)
        target[:, :t] = torch.where(code_mask[..., None], codes, torch.full_like(codes, -100))
        target[torch.arange(b), lengths, 0] = self.eos
        ce = F.cross_entropy(logits.flatten(0, 2), target.flatten(), ignore_index=-100, reduction="none").view_as(target)
        valid = target != -100
        per_q = (ce * valid).sum((0, 1)) / valid.sum((0, 1)).clamp_min(1)
        return per_q.mean(), {f"ce_q{q}": float(per_q[q].detach()) for q in range(self.config.codebooks)}

    @torch.no_grad()
    def generate(self, prompt: torch.Tensor, phonemes: torch.Tensor, max_frames: int, temperature: float = 0.7,
                 top_k: int = 20, generator: torch.Generator | None = None, min_frames: int = 1) -> torch.Tensor:
        """One utterance: prompt (P, n_q), phonemes (L,) → codes (T, n_q), stopping at end of speech or max_frames.

        temperature 0 = greedy (the most likely codes at every step).
        """
        dev = self.device
        prompt, phonemes = prompt[None].to(dev), phonemes[None].to(dev)
        x = self.prefix(prompt, torch.ones(prompt.shape[:2], dtype=torch.bool, device=dev), phonemes)
        out = self.backbone(inputs_embeds=x, use_cache=True)
        past, h = out.past_key_values, out.last_hidden_state[:, -1:]
        frames = []
        pos = x.shape[1]
        for t in range(max_frames):
            lg = self.logits(h)[0, 0]  # (n_q, K + 1)
            if t < min_frames:
                lg[0, self.eos] = -float("inf")
            lg[1:, self.eos] = -float("inf")
            codes = _sample(lg, temperature, top_k, generator)
            if int(codes[0]) == self.eos:
                break
            frames.append(codes)
            if pos >= self.config.max_positions:
                break
            e = self.frame_embed(codes[None, None]) + self.segment_embed.weight[SEG_AUDIO]
            out = self.backbone(inputs_embeds=e, past_key_values=past, use_cache=True,
                                position_ids=torch.tensor([[pos]], device=dev))
            past, h = out.past_key_values, out.last_hidden_state
            pos += 1
        if not frames:
            return torch.zeros(0, self.config.codebooks, dtype=torch.long)
        return torch.stack(frames).cpu()


def _sample(logits: torch.Tensor, temperature: float, top_k: int, generator: torch.Generator | None) -> torch.Tensor:
    if temperature <= 0:
        return logits.argmax(-1)
    lg = logits.float() / temperature
    if top_k and top_k < lg.shape[-1]:
        kth = lg.topk(top_k, -1).values[..., -1:]
        lg = lg.masked_fill(lg < kth, -float("inf"))
    probs = lg.softmax(-1).cpu()
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1).to(logits.device)
