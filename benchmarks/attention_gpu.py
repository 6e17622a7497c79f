"""GPU benchmark of Sparse Reference Attention (issue 6): dense joint vs sparse vs sparse+cached, and a full DiT step.

Attention part: bf16 SDPA (flash and cuDNN backends), 12 heads × 128, 32k generation tokens, 32k/64k/96k reference
tokens; 24 denoising steps run for real:
  dense joint     24 × attn([R;G] → [R;G])                      (the reference concatenated into the sequence)
  sparse          24 × (attn(R → R) + attn(G → [G;R]))          (the seed's mask, reference recomputed each step)
  sparse+cached   attn(R → R) once + 24 × attn(G → [G;R])        (reference K/V computed once)
FLOP ideal = dense FLOPs / cached FLOPs over the 24 steps; "fraction of ideal" = measured speedup / ideal.
DiT part: AvatarTransformer3DModel (hidden 1536, 12 heads × 128, `--layers` blocks; per-layer cost does not
depend on depth, so ratios hold for the 30-layer paper model), the same three modes end to end (FLOPs counted with
torch.utils.flop_counter), plus cache memory. Imports torch and the project; diffusers must be importable for the
DiT part (carried as a wheel on the device machine). Writes perf.json and perf.md to --out.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from avatarv.models.reference_attention import attend, attention_flops

STEPS = 24
HEADS, HEAD_DIM = 12, 128


def cuda_time(fn, warmup: int = 2, reps: int = 5) -> float:
    """Median seconds of fn() over reps, timed with CUDA events after warm-up."""
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        torch.cuda.synchronize()
        times.append(a.elapsed_time(b) / 1e3)
    return statistics.median(times)


def attention_part(n_gen: int, n_refs: list[int], backends: dict, reps: int) -> list[dict]:
    rows = []
    for name, backend in backends.items():
        for n_ref in n_refs:
            rows.append(attention_row(name, backend, n_gen, n_ref, reps))
            torch.cuda.empty_cache()  # the row's tensors went with its frame
    return rows


def attention_row(name: str, backend, n_gen: int, n_ref: int, reps: int) -> dict:
    """One backend at one reference length; its tensors are freed when it returns."""
    n = n_ref + n_gen
    q, k, v = (torch.randn(1, HEADS, n, HEAD_DIM, device="cuda", dtype=torch.bfloat16) for _ in range(3))
    qr, kr, vr = q[:, :, :n_ref], k[:, :, :n_ref], v[:, :, :n_ref]
    qg, kg, vg = q[:, :, n_ref:], k[:, :, n_ref:], v[:, :, n_ref:]
    # cached K/V laid out once as [K_G slot | K_R]: a step writes only K_G (no copy of K_R)
    kbuf, vbuf = torch.cat([kg, kr], 2), torch.cat([vg, vr], 2)

    def dense():
        return F.scaled_dot_product_attention(q, k, v)

    def ref_once():
        return F.scaled_dot_product_attention(qr, kr, vr)

    def gen_cat():
        return attend(qg, kg, vg, kr, vr)

    def gen_buf():
        kbuf[:, :, :n_gen].copy_(kg)
        vbuf[:, :, :n_gen].copy_(vg)
        return F.scaled_dot_product_attention(qg, kbuf, vbuf)

    with sdpa_kernel([backend]):
        t = {
            "dense_step": cuda_time(dense, reps=reps), "ref_once": cuda_time(ref_once, reps=reps),
            "gen_step_cat": cuda_time(gen_cat, reps=reps), "gen_step_buf": cuda_time(gen_buf, reps=reps),
        }
        loops = {
            "dense": cuda_time(lambda: [dense() for _ in range(STEPS)], warmup=1, reps=3),
            "sparse": cuda_time(lambda: [(ref_once(), gen_cat()) for _ in range(STEPS)], warmup=1, reps=3),
            "cached": cuda_time(lambda: (ref_once(), [gen_buf() for _ in range(STEPS)]), warmup=1, reps=3),
        }
    f_dense = attention_flops(n, n, HEAD_DIM, HEADS)
    f_ref = attention_flops(n_ref, n_ref, HEAD_DIM, HEADS)
    f_gen = attention_flops(n_gen, n, HEAD_DIM, HEADS)
    ideal = STEPS * f_dense / (f_ref + STEPS * f_gen)
    ideal_sparse = f_dense / (f_ref + f_gen)
    row = dict(backend=name, n_gen=n_gen, n_ref=n_ref, **{f"t_{k}": v for k, v in t.items()},
               **{f"t24_{k}": v for k, v in loops.items()},
               tflops_dense=f_dense / t["dense_step"] / 1e12, tflops_ref=f_ref / t["ref_once"] / 1e12,
               tflops_gen=f_gen / t["gen_step_buf"] / 1e12,
               ideal_cached=ideal, speedup_cached=loops["dense"] / loops["cached"],
               ideal_sparse=ideal_sparse, speedup_sparse=loops["dense"] / loops["sparse"])
    row["fraction_of_ideal"] = row["speedup_cached"] / ideal
    print(f"[attn {name}] R={n_ref} G={n_gen}: dense {t['dense_step']*1e3:.1f} ms ({row['tflops_dense']:.0f} TF/s), "
          f"gen step {t['gen_step_buf']*1e3:.1f} ms ({row['tflops_gen']:.0f} TF/s), 24-step speedup "
          f"{row['speedup_cached']:.2f}x of ideal {ideal:.2f}x = {row['fraction_of_ideal']:.1%}", flush=True)
    return row


def flex_part(n_gen: int, n_refs: list[int], reps: int) -> list[dict]:
    """Compiled FlexAttention with the segment block mask over the joint [R; G] sequence (one call = the sparse
    form's two SDPA calls), against those two cuDNN/flash SDPA calls; also its error vs them."""
    from torch.nn.attention.flex_attention import create_block_mask, flex_attention

    flex = torch.compile(flex_attention, dynamic=False)
    rows = []
    for n_ref in n_refs:
        rows.append(flex_row(flex, create_block_mask, n_gen, n_ref, reps))
        torch.cuda.empty_cache()  # the row's tensors went with its frame
    return rows


def flex_row(flex, create_block_mask, n_gen: int, n_ref: int, reps: int) -> dict:
    """FlexAttention vs two SDPA calls at one reference length; its tensors are freed when it returns."""
    n = n_ref + n_gen
    q, k, v = (torch.randn(1, HEADS, n, HEAD_DIM, device="cuda", dtype=torch.bfloat16) for _ in range(3))
    seg = (torch.arange(n, device="cuda") >= n_ref).int()

    def mask_mod(b, h, qi, ki):
        return seg[ki] <= seg[qi]

    block = create_block_mask(mask_mod, None, None, n, n, device="cuda", _compile=True)  # no dense N×N mask

    def two_sdpa():
        with sdpa_kernel([SDPBackend.CUDNN_ATTENTION]):
            r = F.scaled_dot_product_attention(q[:, :, :n_ref], k[:, :, :n_ref], v[:, :, :n_ref])
            g = attend(q[:, :, n_ref:], k[:, :, n_ref:], v[:, :, n_ref:], k[:, :, :n_ref], v[:, :, :n_ref])
        return torch.cat([r, g], 2)

    t0 = time.time()
    out = flex(q, k, v, block_mask=block)
    torch.cuda.synchronize()
    compile_s = time.time() - t0
    ref = two_sdpa()
    err = ((out.float() - ref.float()).norm() / ref.float().norm()).item()
    f = attention_flops(n_ref, n_ref, HEAD_DIM, HEADS) + attention_flops(n_gen, n, HEAD_DIM, HEADS)
    t_flex = cuda_time(lambda: flex(q, k, v, block_mask=block), reps=reps)
    t_sdpa = cuda_time(two_sdpa, reps=reps)
    print(f"[flex] R={n_ref} G={n_gen}: flex {t_flex*1e3:.1f} ms ({f/t_flex/1e12:.0f} TF/s) vs 2×SDPA cuDNN "
          f"{t_sdpa*1e3:.1f} ms ({f/t_sdpa/1e12:.0f} TF/s); rel err {err:.1e}; first call {compile_s:.0f} s", flush=True)
    return dict(n_ref=n_ref, n_gen=n_gen, t_flex=t_flex, t_two_sdpa_cudnn=t_sdpa, tflops_flex=f / t_flex / 1e12,
                tflops_two_sdpa=f / t_sdpa / 1e12, rel_err_vs_sdpa=err, compile_s=compile_s)


def count_flops(fn) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    return float(counter.get_total_flops())


def dit_part(layers: int, n_ref_frames: list[int], reps: int, grid: int = 64, gen_frames: int = 8) -> tuple[list[dict], dict]:
    from avatarv.models.dit import AvatarTransformer3DModel

    torch.manual_seed(0)
    dev, dt = "cuda", torch.bfloat16
    model = AvatarTransformer3DModel(in_channels=16, hidden=HEADS * HEAD_DIM, layers=layers, heads=HEADS, patch=2,
                                     audio_dim=768).to(dev, dt).eval().requires_grad_(False)
    side = 2 * grid
    lat = torch.randn(1, 16, gen_frames, side, side, device=dev, dtype=dt)
    motion = torch.randn(1, gen_frames, 16, device=dev, dtype=dt)
    audio = torch.randn(1, 1 + 4 * (gen_frames - 1), 768, device=dev, dtype=dt)
    t = torch.tensor([0.6], device=dev)
    rows = []
    check = {}
    with torch.no_grad():
        # correctness on the GPU in bf16: cached vs uncached (sparse) on the smallest reference
        ref = torch.randn(1, 16, n_ref_frames[0], side, side, device=dev, dtype=dt)
        rmo = torch.randn(1, n_ref_frames[0], 16, device=dev, dtype=dt)
        a = model(lat, t, motion, audio, reference=model.encode_reference(ref, rmo)).sample.float()
        b = model.forward_uncached(lat, t, motion, audio, reference_segments=[(ref, rmo)], attention="sparse").sample.float()
        check["bf16_cached_vs_uncached_rel_err"] = ((a - b).norm() / b.norm()).item()
        for tr in n_ref_frames:
            rows.append(dit_row(model, lat, t, motion, audio, layers, tr, side, grid, gen_frames, reps,
                                loop=tr == n_ref_frames[0]))
            torch.cuda.empty_cache()  # the row's reference cache went with its frame
    return rows, check


def dit_row(model, lat, t, motion, audio, layers: int, tr: int, side: int, grid: int, gen_frames: int, reps: int,
            loop: bool) -> dict:
    """The three modes at `tr` reference frames (plus one real 24-step loop if `loop`); frees its cache on return."""
    dev, dt = lat.device, lat.dtype
    ref = torch.randn(1, 16, tr, side, side, device=dev, dtype=dt)
    rmo = torch.randn(1, tr, 16, device=dev, dtype=dt)
    segs = [(ref, rmo)]
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    cache = model.encode_reference(ref, rmo)
    torch.cuda.synchronize()
    cache_bytes = cache.nbytes()
    encode_peak = torch.cuda.max_memory_allocated() - base

    def dense():
        return model.forward_uncached(lat, t, motion, audio, reference_segments=segs, attention="full")

    def sparse():
        return model.forward_uncached(lat, t, motion, audio, reference_segments=segs, attention="sparse")

    def cached():
        return model(lat, t, motion, audio, reference=cache)

    def encode():
        return model.encode_reference(ref, rmo)

    times = {k: cuda_time(f, warmup=1, reps=reps) for k, f in
             [("dense", dense), ("sparse", sparse), ("cached", cached), ("encode", encode)]}
    flops = {k: count_flops(f) for k, f in [("dense", dense), ("sparse", sparse), ("cached", cached), ("encode", encode)]}
    n_gen_tok = gen_frames * (grid * grid + 1)
    n_ref_tok = tr * (grid * grid + 1)
    ideal = STEPS * flops["dense"] / (flops["encode"] + STEPS * flops["cached"])
    measured = STEPS * times["dense"] / (times["encode"] + STEPS * times["cached"])
    row = dict(layers=layers, n_gen=n_gen_tok, n_ref=n_ref_tok, cache_bytes=cache_bytes, encode_peak_bytes=encode_peak,
               cache_bytes_30_layers=cache_bytes / layers * 30,
               **{f"t_{k}": v for k, v in times.items()}, **{f"flops_{k}": v for k, v in flops.items()},
               **{f"tflops_{k}": flops[k] / times[k] / 1e12 for k in times},
               ideal_cached=ideal, speedup_cached=measured, fraction_of_ideal=measured / ideal,
               speedup_sparse=times["dense"] / times["sparse"], ideal_sparse=flops["dense"] / flops["sparse"])
    if loop:  # one real 24-step loop (Euler updates included) to confirm the arithmetic
        def loop_dense():
            x = lat.clone()
            for _ in range(STEPS):
                x = x - 0.04 * model.forward_uncached(x, t, motion, audio, reference_segments=segs, attention="full").sample
            return x

        def loop_cached():
            c = model.encode_reference(ref, rmo)
            x = lat.clone()
            for _ in range(STEPS):
                x = x - 0.04 * model(x, t, motion, audio, reference=c).sample
            return x

        row["t24_dense"] = cuda_time(loop_dense, warmup=0, reps=1)
        row["t24_cached"] = cuda_time(loop_cached, warmup=0, reps=1)
        row["speedup_cached_loop"] = row["t24_dense"] / row["t24_cached"]
    print(f"[dit L={layers}] R={n_ref_tok} G={n_gen_tok}: step dense {times['dense']*1e3:.0f} ms "
          f"({row['tflops_dense']:.0f} TF/s), cached {times['cached']*1e3:.0f} ms ({row['tflops_cached']:.0f} TF/s), "
          f"encode {times['encode']*1e3:.0f} ms; 24-step speedup {measured:.2f}x of ideal {ideal:.2f}x "
          f"= {measured/ideal:.1%}; cache {cache_bytes/2**30:.2f} GiB", flush=True)
    return row


def write_report(out: Path, meta: dict, attn: list[dict], dit: list[dict], check: dict) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "perf.json").write_text(json.dumps(dict(meta=meta, attention=attn, dit=dit, check=check), indent=1))
    lines = [f"# Sparse Reference Attention on {meta['device']}", "",
             (f"torch {meta['torch']}, bf16, {HEADS} heads × {HEAD_DIM}, batch 1, {STEPS} denoising steps. "
              "Generated by `benchmarks/attention_gpu.py` (times: CUDA events, medians)."), "",
             "## Attention only", "",
             ("| backend | N_R | N_G | dense step ms (TF/s) | R once ms (TF/s) | G step ms (TF/s) | 24-step dense s | sparse s | "
              "sparse+cached s | speedup cached (ideal) | % of ideal | sparse speedup (ideal) |"),
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in attn:
        lines.append(f"| {r['backend']} | {r['n_ref']} | {r['n_gen']} | {r['t_dense_step']*1e3:.1f} ({r['tflops_dense']:.0f}) | "
                     f"{r['t_ref_once']*1e3:.1f} ({r['tflops_ref']:.0f}) | {r['t_gen_step_buf']*1e3:.1f} ({r['tflops_gen']:.0f}) | "
                     f"{r['t24_dense']:.2f} | {r['t24_sparse']:.2f} | {r['t24_cached']:.2f} | "
                     f"{r['speedup_cached']:.2f}× ({r['ideal_cached']:.2f}×) | {r['fraction_of_ideal']:.1%} | "
                     f"{r['speedup_sparse']:.2f}× ({r['ideal_sparse']:.2f}×) |")
    if dit:
        lines += ["", f"## Full DiT step (AvatarTransformer3DModel, hidden {HEADS*HEAD_DIM}, {dit[0]['layers']} layers)", "",
                  ("| N_R | N_G | dense step ms (TF/s) | sparse step ms | cached step ms (TF/s) | encode ms | 24-step speedup (ideal) | "
                   "% of ideal | cache GiB (30 layers) | encode peak GiB |"), "|---|---|---|---|---|---|---|---|---|---|"]
        for r in dit:
            lines.append(f"| {r['n_ref']} | {r['n_gen']} | {r['t_dense']*1e3:.0f} ({r['tflops_dense']:.0f}) | {r['t_sparse']*1e3:.0f} | "
                         f"{r['t_cached']*1e3:.0f} ({r['tflops_cached']:.0f}) | {r['t_encode']*1e3:.0f} | "
                         f"{r['speedup_cached']:.2f}× ({r['ideal_cached']:.2f}×) | {r['fraction_of_ideal']:.1%} | "
                         f"{r['cache_bytes']/2**30:.2f} ({r['cache_bytes_30_layers']/2**30:.1f}) | {r['encode_peak_bytes']/2**30:.2f} |")
        loop = [r for r in dit if "t24_dense" in r]
        for r in loop:
            lines.append(f"\nReal 24-step loop at N_R={r['n_ref']}: dense {r['t24_dense']:.2f} s, encode + cached "
                         f"{r['t24_cached']:.2f} s → {r['speedup_cached_loop']:.2f}×.")
    if check:
        lines.append(f"\nGPU check, bf16: cached vs uncached output relative error {check['bf16_cached_vs_uncached_rel_err']:.2e}.")
    (out / "perf.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="reports/perf")
    ap.add_argument("--n-gen", type=int, default=32768)
    ap.add_argument("--n-refs", default="32768,65536,98304")
    ap.add_argument("--backends", default="flash,cudnn")
    ap.add_argument("--layers", type=int, default=8)
    ap.add_argument("--ref-frames", default="8,16,24", help="reference latent frames for the DiT part (4097 tokens each)")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--skip-dit", action="store_true")
    ap.add_argument("--flex-only", action="store_true", help="only the compiled FlexAttention comparison (flex.json)")
    args = ap.parse_args()
    known = {"flash": SDPBackend.FLASH_ATTENTION, "cudnn": SDPBackend.CUDNN_ATTENTION, "efficient": SDPBackend.EFFICIENT_ATTENTION}
    meta = dict(device=torch.cuda.get_device_name(), torch=torch.__version__, time=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()))
    print(meta, flush=True)
    if args.flex_only:
        rows = flex_part(args.n_gen, [int(x) for x in args.n_refs.split(",")], args.reps)
        Path(args.out).mkdir(parents=True, exist_ok=True)
        (Path(args.out) / "flex.json").write_text(json.dumps(dict(meta=meta, flex=rows), indent=1))
        return
    attn = []
    for b in args.backends.split(","):
        try:
            attn += attention_part(args.n_gen, [int(x) for x in args.n_refs.split(",")], {b: known[b]}, args.reps)
        except RuntimeError as e:  # a backend may be unavailable for this build / shape
            print(f"[attn {b}] unavailable: {str(e).splitlines()[0]}", flush=True)
    dit, check = ([], {}) if args.skip_dit else dit_part(args.layers, [int(x) for x in args.ref_frames.split(",")], max(2, args.reps // 2))
    write_report(Path(args.out), meta, attn, dit, check)


if __name__ == "__main__":
    main()
