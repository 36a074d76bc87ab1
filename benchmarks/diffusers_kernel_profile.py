"""Where one image's GPU time goes: CUDA kernel time by kind, plain against an optimised profile.

Builds the full-size Flux.1-dev pipeline with random weights (``diffusers_throughput.build_flux``),
renders one 1024² image of 28 steps under ``plain``, then under each profile named on the command
line, and for each prints the wall time per image, the GPU kernel time split into matrix
multiplies, attention, inductor's fused kernels and the rest, the busiest kernels, and the VAE
decode alone. The split says how far a profile is from its ceiling: the matrix multiplies'
FLOPs over their time against the card's measured bf16 rate, the fused kernels against memory
bandwidth.

    python3 benchmarks/diffusers_kernel_profile.py lossless [fast]   # on the GPU machine
"""

from __future__ import annotations

import collections
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import diffusers_throughput as bench
from synthesis.providers import diffusers_profiles as profiles
from synthesis.providers.gpu_batcher import FLUX, run_pipeline_batch

KINDS = (  # (kind, substrings of the kernel's name), first match wins
    ("attention", ("sdpa", "fmha", "flash_fprop", "attention_fwd")),
    ("matmul", ("gemm", "nvjet", "sm90_xmma", "cutlass", "scaled_mm")),
    ("conv", ("conv", "implicit")),
    ("fused (inductor)", ("triton",)),
)


def kind_of(kernel: str) -> str:
    name = kernel.lower()
    return next((kind for kind, keys in KINDS if any(k in name for k in keys)), "other")


def profile_one(pipe: Any, label: str) -> None:
    jobs = bench.jobs_for(FLUX, 1024, 28, 1)

    def render() -> Any:
        return run_pipeline_batch(pipe, family=FLUX, plus=False, jobs=jobs)

    render()
    wall, _, _ = bench.measure(render, "cuda")
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
        render()
        torch.cuda.synchronize()
    by_kind: collections.Counter[str] = collections.Counter()
    by_kernel: collections.Counter[str] = collections.Counter()
    calls: collections.Counter[str] = collections.Counter()
    for event in prof.key_averages():
        if event.device_time_total > 0:
            by_kind[kind_of(event.key)] += event.device_time_total
            by_kernel[event.key] += event.device_time_total
            calls[event.key] += event.count
    total = sum(by_kind.values())
    print(f"== {label}: wall {wall:.2f} s/image; GPU kernel time {total / 1e6:.2f} s")
    for kind, us in by_kind.most_common():
        print(f"   {kind:17s} {us / 1e6:6.2f} s  {100 * us / total:5.1f} %")
    for kernel, us in by_kernel.most_common(8):
        print(f"   {us / 1e6:6.3f} s  x{calls[kernel]:5d}  {kernel[:100]}")
    latent = torch.randn(1, 16, 128, 128, device="cuda", dtype=torch.bfloat16)
    with torch.no_grad():
        decode_s, _, _ = bench.measure(lambda: pipe.vae.decode(latent), "cuda")
    print(f"   VAE decode alone {decode_s:.3f} s", flush=True)


def main() -> None:
    profiles.use_compile_cache("/tmp/inductor-cache")
    pipe = bench.build_flux("cuda", torch.bfloat16)
    profile_one(pipe, profiles.PLAIN)
    for name in sys.argv[1:]:
        torch._dynamo.reset()
        started = time.perf_counter()
        profiles.apply_profile(pipe, FLUX, name)
        profiles.warm_up_pipeline(pipe, FLUX, plus=False, sizes=[(1024, 1024)], guidance=3.5)
        print(f"   {name} ready in {time.perf_counter() - started:.0f} s")
        profile_one(pipe, name)


if __name__ == "__main__":
    main()
