"""Cost of one RLHF update at a profile's shape: a GRPO step (SDE group rollout through `sample_window`, then the
policy-gradient update over every stochastic step, `rlhf.inner_epochs` times, with the reference model's means) and
a Diffusion-DPO step (policy and reference velocity errors on `rlhf.dpo_batch` pairs, one backward). Rewards and VAE
decoding are left out (they depend on the judges, not on the generator's size).

    PYTHONPATH=src python benchmarks/rlhf_step.py --profile tiny                    # CPU
    PYTHONPATH=src python benchmarks/rlhf_step.py --profile small --device cuda     # GPU, small shape

Random weights (speed does not depend on them), the student as stage 4 saves it (guidance as an input). Results are
merged into reports/rlhf_step.json under the device's name and profile; reports/rlhf_step.md is rewritten from it.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def build(cfg, device: str, dtype: torch.dtype):
    from avatarv.inference.conditions import ConditionSpec
    from avatarv.inference.pipeline import pipeline_from_config
    from avatarv.models.audio_encoder import AudioEncoder
    from avatarv.models.dit import transformer_from_config
    from avatarv.models.vae import AvatarVideoVAE

    torch.manual_seed(0)
    v = cfg.vae
    vae = AvatarVideoVAE(latent_channels=v.latent_channels, base_channels=v.base_channels,
                         spatial_downsample=v.spatial_downsample, temporal_downsample=v.temporal_downsample)
    student = transformer_from_config(cfg.dit, v.latent_channels, sample_size=cfg.train.sft.size,
                                      temporal_downsample=v.temporal_downsample)
    student = student.with_config(condition_prior_var=0.1, motion_mean=[0.0] * 16, motion_std=[1.0] * 16,
                                  guidance_embed=True)
    audio = AudioEncoder(audio_dim=cfg.dit.audio_dim, mel_mean=-8.0, mel_std=1.0)
    spec = ConditionSpec(motion_context_frames=cfg.conditions.motion_context_frames,
                         motion_shift=cfg.conditions.motion_shift)
    pipe = pipeline_from_config(cfg, vae, student, audio, spec, steps=cfg.distill.student_steps).to(device, dtype)
    return pipe, spec


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def measure(cfg, device: str, dtype: torch.dtype, repeats: int) -> dict:
    import copy

    from avatarv.diffusion.flow import gaussian_kl, gaussian_log_prob, sde_mean
    from avatarv.diffusion.guidance import Guidance
    from avatarv.inference.conditions import from_reference
    from avatarv.train.rlhf import group_advantages, grpo_loss

    pipe, spec = build(cfg, device, dtype)
    tr = pipe.transformer
    ref_tr = copy.deepcopy(tr).requires_grad_(False)
    r = cfg.rlhf
    B = r.prompts_per_step * r.group_size
    td, T = cfg.vae.temporal_downsample, cfg.sampling.chunk_latent_frames
    C, h = cfg.vae.latent_channels, cfg.train.sft.size // cfg.vae.spatial_downsample
    n_video = 1 + td * (T - 1)
    g = torch.Generator(device=device).manual_seed(0)

    def window(n):
        ref = torch.randn(n, C, cfg.sampling.reference_latent_frames, h, h, device=device, dtype=dtype, generator=g)
        motion = torch.randn(n, 1 + td * (cfg.sampling.reference_latent_frames - 1), 16, device=device, dtype=dtype,
                             generator=g)
        hist = torch.randn(n, spec.motion_context_frames, 16, device=device, dtype=dtype, generator=g)
        return from_reference(tr, spec, ref, motion, hist)

    mel = torch.randn(B, 80, 4 * (n_video + 2 * tr.config.audio_window), device=device, dtype=dtype, generator=g)
    w = window(B)
    guidance = Guidance(cfg.sampling.cfg_audio, cfg.sampling.cfg_reference)
    opt = torch.optim.AdamW([p for p in tr.parameters() if p.requires_grad], lr=1e-6)
    out = {"samples_per_grpo_step": B, "dpo_pairs_per_step": r.dpo_batch, "sampling_steps": cfg.distill.student_steps}
    times = {"rollout_s": [], "update_s": [], "dpo_s": []}
    for rep in range(repeats + 1):  # the first round warms up
        sync(device)
        t0 = time.perf_counter()
        with torch.no_grad():
            audio = pipe.audio_encoder(mel)
            cache = tr.encode_reference(w.ref_latents, w.ref_motion, w.ref_context)
            trace: list = []
            x = torch.randn(B, C, T, h, h, device=device, dtype=dtype, generator=g)
            m = torch.randn(B, T, 16, device=device, dtype=dtype, generator=g)
            pipe.sample_window(x, m, w, audio=audio, reference_cache=cache, guidance=guidance, noise_level=r.noise_level,
                               generator=g, trace=trace)
        sync(device)
        t1 = time.perf_counter()
        adv = group_advantages(torch.randn(B, generator=torch.Generator().manual_seed(1)), r.group_size).to(device)
        for _epoch in range(r.inner_epochs):
            for st in trace:
                sigma = torch.full((1,), st["t"], device=device)
                with torch.no_grad():
                    rc = ref_tr.encode_reference(w.ref_latents, w.ref_motion, w.ref_context)
                    pipe.transformer = ref_tr
                    rv, rm = pipe.velocity(st["lat"], st["mot"], sigma, w, audio=audio, reference_cache=rc,
                                           guidance=guidance)
                    pipe.transformer = tr
                    ref_mean = torch.cat([sde_mean(st["lat"].float(), rv.float(), st["t"], st["t_next"], st["sigma"]).flatten(1),
                                          sde_mean(st["mot"].float(), rm.float(), st["t"], st["t_next"], st["sigma"]).flatten(1)], 1)
                c = tr.encode_reference(w.ref_latents, w.ref_motion, w.ref_context)
                v, vm = pipe.velocity(st["lat"], st["mot"], sigma, w, audio=audio, reference_cache=c, guidance=guidance)
                mean = torch.cat([sde_mean(st["lat"].float(), v.float(), st["t"], st["t_next"], st["sigma"]).flatten(1),
                                  sde_mean(st["mot"].float(), vm.float(), st["t"], st["t_next"], st["sigma"]).flatten(1)], 1)
                nxt = torch.cat([st["next_lat"].flatten(1), st["next_mot"].flatten(1)], 1)
                old = torch.cat([st["mean_lat"].flatten(1), st["mean_mot"].flatten(1)], 1)
                pg, _ = grpo_loss(gaussian_log_prob(nxt, mean, st["std"]), gaussian_log_prob(nxt, old, st["std"]), adv,
                                  r.clip_range)
                (pg + r.kl_beta * gaussian_kl(mean, ref_mean, st["std"]).mean()).backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
        sync(device)
        t2 = time.perf_counter()
        # DPO: 2 × dpo_batch velocity passes with gradients, the same without for the reference
        n = 2 * r.dpo_batch
        wd = window(n)
        a = pipe.audio_encoder(mel[:1].expand(n, -1, -1)).detach()
        x0 = torch.randn(n, C, T, h, h, device=device, dtype=dtype, generator=g)
        m0 = torch.randn(n, T, 16, device=device, dtype=dtype, generator=g)
        t = torch.rand(n, device=device, generator=g).to(dtype)
        with torch.no_grad():
            rc = ref_tr.encode_reference(wd.ref_latents, wd.ref_motion, wd.ref_context)
            pipe.transformer = ref_tr
            pipe.velocity(x0, m0, t, wd, audio=a, reference_cache=rc, guidance=guidance)
            pipe.transformer = tr
        c = tr.encode_reference(wd.ref_latents, wd.ref_motion, wd.ref_context)
        v, vm = pipe.velocity(x0, m0, t, wd, audio=a, reference_cache=c, guidance=guidance)
        (v.float().square().mean() + vm.float().square().mean()).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        sync(device)
        t3 = time.perf_counter()
        if rep > 0 or repeats == 0:
            times["rollout_s"].append(t1 - t0)
            times["update_s"].append(t2 - t1)
            times["dpo_s"].append(t3 - t2)
    for k, v in times.items():
        out[k] = min(v)
    out["grpo_step_s"] = out["rollout_s"] + out["update_s"]
    if device == "cuda":
        out["peak_memory_gib"] = torch.cuda.max_memory_allocated() / 2**30
    return out


def main() -> None:
    from avatarv.config import load_config

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--profile", default="tiny")
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", type=Path, default=ROOT / "reports" / "rlhf_step.json")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    cfg = load_config(a.profile)
    dtype = torch.bfloat16 if a.device == "cuda" else torch.float32
    result = measure(cfg, a.device, dtype, a.repeats)
    device = torch.cuda.get_device_name() if a.device == "cuda" else f"CPU ({platform.processor() or platform.machine()}, {a.threads} thread)"
    print(json.dumps({device: {a.profile: result}}, indent=1))
    doc = json.loads(a.out.read_text()) if a.out.exists() else {}
    doc.setdefault(device, {})[a.profile] = result
    a.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = a.out.with_suffix(".tmp")
    tmp.write_text(json.dumps(doc, indent=1))
    tmp.replace(a.out)
    lines = ["# RLHF update cost (benchmarks/rlhf_step.py; random weights, rewards and decoding excluded)", "",
             "| device | profile | samples / GRPO step | rollout s | update s | GRPO step s | DPO pairs | DPO step s |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for dev, profiles in doc.items():
        for prof, r in profiles.items():
            lines.append(f"| {dev} | {prof} | {r['samples_per_grpo_step']} | {r['rollout_s']:.3f} | {r['update_s']:.3f} | "
                         f"{r['grpo_step_s']:.3f} | {r['dpo_pairs_per_step']} | {r['dpo_s']:.3f} |")
    a.out.with_suffix(".md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
