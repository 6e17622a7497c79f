"""Small-profile training throughput of the shared loop on one GPU: steps/s, model FLOPs utilisation (MFU) and a
short loss curve (issue 7; reports/perf.md "Training" section).

The generator is the small profile's (params.yaml `profiles.small.dit`), trained with the personality-SFT
objective (reference through Sparse Reference Attention, audio cross-attention, motion stream, face/lip terms) by
`train_loop` exactly as the stages run it: bf16 autocast through accelerate, Muon + AdamW, EMA, clipping. The data
are synthetic latents of the small profile's shape (no corpus travels to the GPU machine): each sample is a
smooth random "identity" field plus a per-scene tint and a motion-driven shift, its reference another scene of
the same identity — enough structure that the loss falls.

FLOPs per step are counted by `torch.utils.flop_counter.FlopCounterMode` on one forward + backward (matmuls and
attention), MFU = FLOPs/step × steps/s / peak, with peak both the datasheet dense bf16 rate of the card and the
rate of an 8192³ bf16 matmul measured in the same run.

Usage (device): PYTHONPATH=src python3 benchmarks/train_profile.py --steps 60 --batch 8 --out $OUT
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from itertools import pairwise
from pathlib import Path

import torch
import torch.nn.functional as F

DATASHEET_BF16 = {"H100": 989e12, "H200": 989e12}


class SyntheticSFT:
    """A pool of structured samples at the small profile's latent shape, on the GPU; batch i = seeded draw."""

    def __init__(self, n: int, C: int, T: int, H: int, W: int, video_frames: int, device, seed: int = 0,
                 identities: int = 32):
        g = torch.Generator(device="cpu").manual_seed(seed)
        base = F.avg_pool2d(torch.randn(identities, C, H, W, generator=g), 5, 1, 2) * 3  # smooth identity fields
        ident = torch.randint(identities, (n,), generator=g)
        tint_t, tint_r = torch.randn(n, C, 1, 1, 1, generator=g) * 0.3, torch.randn(n, C, 1, 1, 1, generator=g) * 0.3
        motion = torch.cumsum(torch.randn(n, video_frames, 16, generator=g) * 0.1, 1)
        shift = motion[:, ::4, 3][:, :T]  # latent-rate horizontal shift from the motion stream

        def clip(tint):
            frames = [torch.roll(base[ident], int(s), dims=-1) for s in range(T)]
            x = torch.stack(frames, 2) + tint
            return x + 0.05 * shift[:, None, :, None, None]

        self.latents = clip(tint_t).to(device)
        self.ref = clip(tint_r).to(device)
        self.motion = motion.to(device)
        self.mel = (torch.randn(n, 80, 4 * video_frames, generator=g) + motion[:, :, 5].repeat_interleave(4, 1)[:, None]).to(device)
        box = torch.tensor([0.25, 0.2, 0.75, 0.85]).expand(n, video_frames, 4).clone()
        mouth = torch.tensor([0.4, 0.6, 0.6, 0.75]).expand(n, video_frames, 4).clone()
        self.face_box, self.mouth_box = box.to(device), mouth.to(device)
        self.n = n

    def batch(self, index, rank, world, bs=8):
        g = torch.Generator().manual_seed(10_000 + index)
        i = torch.randint(self.n, (self.bs,), generator=g).to(self.latents.device)
        return {"latents": self.latents[i], "ref_latents": self.ref[i], "motion": self.motion[i],
                "ref_motion": self.motion[i], "mel": self.mel[i], "face_box": self.face_box[i],
                "mouth_box": self.mouth_box[i]}


def measured_matmul_peak(device) -> float:
    a = torch.randn(8192, 8192, device=device, dtype=torch.bfloat16)
    b = torch.randn(8192, 8192, device=device, dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(10):
        a @ b
    end.record()
    torch.cuda.synchronize()
    return 2 * 8192**3 * 10 / (start.elapsed_time(end) / 1e3)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--out", default="/tmp/train_profile")
    ap.add_argument("--profile", default="small")
    ap.add_argument("--device", default="cuda", help="cpu: a smoke run of the script itself (no MFU)")
    ap.add_argument("--no-muon", action="store_true", help="AdamW for every parameter (Muon's cost, by difference)")
    a = ap.parse_args()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)

    from torch.utils.flop_counter import FlopCounterMode

    from avatarv.config import load_config
    from avatarv.train.generator import AvatarGenerator
    from avatarv.train.loop import make_accelerator, train_loop
    from avatarv.train.objectives import flow_loss
    from avatarv.train.sft import sft_spec

    cfg = load_config(a.profile)
    dev = torch.device(a.device)
    cuda = dev.type == "cuda"
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    st = cfg.train.sft
    st.batch_size, st.checkpoint_every, st.warmup_steps = a.batch, 10**9, 10
    st.mixed_precision = "bf16"
    C, ds, td = cfg.vae.latent_channels, cfg.vae.spatial_downsample, cfg.vae.temporal_downsample
    T, HW = 1 + (st.frames - 1) // td, st.size // ds
    torch.manual_seed(cfg.seed)
    model = AvatarGenerator.from_config(cfg, C).to(dev)
    n_params = sum(p.numel() for p in model.parameters())
    data = SyntheticSFT(512, C, T, HW, HW, st.frames, dev)
    data.bs = a.batch
    losses = {k: v for k, v in st.losses.items() if k != "identity"}  # identity needs the trained VAE + embedder
    spec = sft_spec(cfg, losses)

    def loss_fn(m, batch, gen, step):
        return flow_loss(m, batch, gen, spec, td=td)

    # FLOPs of one training step (forward + backward) at this batch
    fm = FlopCounterMode(display=False)
    b0 = data.batch(0, 0, 1)
    with fm, torch.autocast(dev.type, dtype=torch.bfloat16, enabled=cuda):
        loss, _ = loss_fn(model, b0, torch.Generator(device=dev).manual_seed(0), 0)
        loss.backward()
    model.zero_grad(set_to_none=True)
    flops_step = fm.get_total_flops()

    times: list[float] = []

    def on_step(state):
        sync()
        times.append(time.perf_counter())

    accel = make_accelerator("bf16", a.device)
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    res = train_loop(model, loss_fn, data, st, out / "run", seed=cfg.seed, total_steps=a.steps, resume=False,
                     accelerator=accel, progress=False, on_step=on_step, use_muon=not a.no_muon)
    total = time.perf_counter() - t0
    dts = [b - a_ for a_, b in pairwise(times)][5:-1]  # drop warm-up and the final checkpoint step
    step_s = statistics.median(dts)
    name = torch.cuda.get_device_name() if cuda else "cpu"
    peak_sheet = next((v for k, v in DATASHEET_BF16.items() if k in name), 989e12)
    peak_meas = measured_matmul_peak(dev) if cuda else float("nan")
    tokens = a.batch * T * ((HW // cfg.dit.patch[-1]) ** 2 + 1)
    result = {
        "device": name, "profile": a.profile, "params_m": n_params / 1e6, "batch": a.batch, "muon": not a.no_muon,
        "latent_shape": [C, T, HW, HW], "generation_tokens_per_step": tokens, "reference_tokens_per_step": tokens,
        "steps": a.steps, "step_s_median": step_s, "steps_per_s": 1 / step_s,
        "samples_per_s": a.batch / step_s, "tflop_per_step": flops_step / 1e12,
        "achieved_tflops": flops_step / step_s / 1e12, "mfu_datasheet": flops_step / step_s / peak_sheet,
        "mfu_measured_matmul_peak": flops_step / step_s / peak_meas, "matmul_peak_tflops": peak_meas / 1e12,
        "peak_mem_gib": torch.cuda.max_memory_allocated() / 2**30 if cuda else float("nan"), "wall_s_incl_checkpoint": total,
        "loss_first10": sum(h["loss"] for h in res.state.history[:10]) / 10,
        "loss_last10": sum(h["loss"] for h in res.state.history[-10:]) / 10,
    }
    tag = f"b{a.batch}{'_adamw' if a.no_muon else ''}"
    (out / f"perf_{tag}.json").write_text(json.dumps(result, indent=2))
    (out / f"history_{tag}.json").write_text(json.dumps(res.state.history))
    import shutil

    shutil.rmtree(out / "run", ignore_errors=True)  # checkpoints are large; only numbers travel back
    print(json.dumps(result, indent=2))
    return 0 if all(math.isfinite(h["loss"]) for h in res.state.history) else 1


if __name__ == "__main__":
    sys.exit(main())
