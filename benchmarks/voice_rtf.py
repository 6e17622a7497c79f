"""Voice cloner real-time factor (issue 24): seconds of compute per second of cloned speech, LM and codec apart.

    PYTHONPATH=src python benchmarks/voice_rtf.py --checkpoint runs/voice/final            # the trained tiny model, CPU
    PYTHONPATH=src python benchmarks/voice_rtf.py --profile small --device cuda            # random weights, small shape
    PYTHONPATH=src python benchmarks/voice_rtf.py --profile paper --device cuda            # random weights, paper shape

Without a checkpoint the codec and LM are built at the profile's shape with random weights: speed does not depend
on the weights once the number of generated frames is fixed, so end-of-speech is suppressed and exactly
`--seconds` of tokens are generated (the KV-cached one-frame-per-step loop the CLI runs). Phases timed: speaker
prompt encoding, LM generation, codec decoding (decoder + Griffin-Lim). The first repeat warms up and is dropped.
Results are merged into reports/voice_rtf.json under the device's name; reports/voice_rtf.md is rewritten from it.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def build(cfg, checkpoint: str | None, device: str):
    from avatarv.train.voice import make_codec, make_lm

    if checkpoint:
        from avatarv.inference.voice import VoiceCloner

        c = VoiceCloner.load(checkpoint, device)
        return c.codec, c.lm, float(c.info["prompt_seconds"])
    torch.manual_seed(0)
    codec = make_codec(cfg.voice).to(device).eval()
    lm = make_lm(cfg.voice, 80, codec.frame_rate).to(device).eval()
    return codec, lm, cfg.voice.prompt_seconds


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def measure(codec, lm, prompt_seconds: float, seconds: float, device: str, repeats: int) -> dict:
    sr = codec.config.sample_rate
    g = torch.Generator().manual_seed(0)
    ref = (0.1 * torch.randn(int(prompt_seconds * sr), generator=g)).to(device)
    phonemes = torch.randint(4, lm.config.n_phonemes, (60,), generator=g)
    frames = int(round(seconds * codec.frame_rate))
    rows = []
    for _ in range(repeats + 1):
        sync(device)
        t0 = time.perf_counter()
        prompt = codec.encode(ref)[0]
        sync(device)
        t1 = time.perf_counter()
        codes = lm.generate(prompt, phonemes, frames, temperature=0.7, top_k=20, generator=torch.Generator().manual_seed(1),
                            min_frames=frames)
        sync(device)
        t2 = time.perf_counter()
        audio = codec.decode(codes[None].to(device))
        sync(device)
        t3 = time.perf_counter()
        rows.append({"prompt_s": t1 - t0, "lm_s": t2 - t1, "decode_s": t3 - t2, "frames": int(codes.shape[0]),
                     "audio_s": audio.shape[-1] / sr})
    rows = rows[1:]
    audio_s = sum(r["audio_s"] for r in rows)
    return {
        "frames": rows[0]["frames"], "audio_seconds": rows[0]["audio_s"],
        "rtf_total": sum(r["prompt_s"] + r["lm_s"] + r["decode_s"] for r in rows) / audio_s,
        "rtf_lm": sum(r["lm_s"] for r in rows) / audio_s,
        "rtf_decode": sum(r["decode_s"] for r in rows) / audio_s,
        "lm_ms_per_frame": 1000 * sum(r["lm_s"] for r in rows) / sum(r["frames"] for r in rows),
        "repeats": repeats,
    }


def write_md(results: dict, path: Path) -> None:
    lines = ["# Voice cloner real-time factor (benchmarks/voice_rtf.py)", "",
             ("Compute seconds per second of cloned speech (lower is faster; < 1 = faster than real time). The LM "
              "generates one 40 ms token frame per step with a KV cache; decoding is the codec decoder + Griffin-Lim."), "",
             "| device | profile | weights | threads | seconds | RTF total | RTF LM | RTF decode | LM ms/frame |",
             "|---|---|---|---|---|---|---|---|---|"]
    for _, r in sorted(results.items()):
        lines.append(f"| {r['device_name']} | {r['profile']} | {r['weights']} | {r['threads']} | {r['audio_seconds']:.1f} | "
                     f"{r['rtf_total']:.3f} | {r['rtf_lm']:.3f} | {r['rtf_decode']:.3f} | {r['lm_ms_per_frame']:.1f} |")
    path.write_text("\n".join(lines) + "\n")


def main(argv=None) -> int:
    from avatarv.config import load_config

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default="tiny")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--checkpoint", default=None, help="a trained runs/voice/final (default: random weights)")
    ap.add_argument("--seconds", type=float, default=5.0, help="speech generated per repeat")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1, help="CPU threads (torch.set_num_threads)")
    ap.add_argument("--out", default=str(ROOT / "reports" / "voice_rtf"))
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    cfg = load_config(a.profile)
    codec, lm, prompt_s = build(cfg, a.checkpoint, a.device)
    with torch.inference_mode():
        r = measure(codec, lm, prompt_s, a.seconds, a.device, a.repeats)
    name = torch.cuda.get_device_name(0) if a.device.startswith("cuda") else (platform.processor() or platform.machine())
    r.update({"device_name": name, "device": a.device, "profile": a.profile, "threads": a.threads,
              "weights": "trained" if a.checkpoint else "random", "lm_params_m": sum(p.numel() for p in lm.parameters()) / 1e6,
              "codec_params_m": sum(p.numel() for p in codec.parameters()) / 1e6})
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    js = out.with_suffix(".json")
    results = json.loads(js.read_text()) if js.exists() else {}
    results[f"{a.device}:{name}:{a.profile}:{r['weights']}"] = r
    js.write_text(json.dumps(results, indent=2))
    write_md(results, out.with_suffix(".md"))
    print(json.dumps(r, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
