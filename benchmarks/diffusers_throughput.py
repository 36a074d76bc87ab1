"""Speed and closeness of the GPU worker's optimisation profiles (plain, lossless, fast).

Builds the real Flux.1-dev or Qwen-Image-Edit(-Plus) architecture at full size (the published
transformer / VAE / text-encoder dimensions, written below) with random weights directly on the
GPU in bf16 (nothing is downloaded; tokenizers are trained here on a few sentences), then, on
those same weights, for each profile in turn (``synthesis.providers.diffusers_profiles``, the
code the ``gpu`` worker runs): applies it, warms it up on the size (the compilation a worker
does at start), and renders N images at 1024x1024 with 28 steps on fixed prompts and seeds.

It prints s/image, images/s, the speed-up over plain, peak GPU memory, the time to get ready
(profile + warm-up) and the PSNR of each profile's images against plain's. Random weights give
noise images, but the arithmetic (and so the time) is that of the real models.

    python benchmarks/diffusers_throughput.py --model flux       # plain, lossless, fast
    python benchmarks/diffusers_throughput.py --model qwen --requests 2
    python benchmarks/diffusers_throughput.py --model flux --restart --profiles fast
        # a restarted worker: ready time with the compile cache the first run left on disk
    python benchmarks/diffusers_throughput.py --tiny --profiles plain,lossless   # CPU check

Earlier figures for the micro-batcher (batching gains under 1% at 1024²) are in
``benchmarks/results/diffusers_throughput_{flux,qwen}_h200.txt``.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np
import torch

from synthesis.providers import diffusers_profiles as profiles
from synthesis.providers.gpu_batcher import FLUX, QWEN_EDIT, Job, run_pipeline_batch

CORPUS = [
    "a full body character on a plain white background, stylized illustration, clean lines",
    "Describe the key features of the input image (color, shape, size, texture, objects, "
    "background), then explain how the user's text instruction should alter or modify the image.",
    "Generate a new image that meets the user's requirements while maintaining consistency "
    "with the original input where appropriate. Picture 1: the fox raises both arms, smiling.",
]
QWEN_SPECIAL = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
]
PROMPT = (
    "A stylized red fox scholar in a long teal lab coat, brass spectacles, holding a glowing "
    "vial, full body, standing, plain white background, clean lines, soft shading"
)


def bpe(special: list[str], **kwargs: Any) -> Any:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=600,
        special_tokens=special,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(CORPUS * 4, trainer=trainer)
    cls = kwargs.pop("cls", PreTrainedTokenizerFast)
    return cls(tokenizer_object=tok, **kwargs)


def build_tiny(fam: str, device: str, dtype: torch.dtype) -> Any:
    """The tests' tiny pipelines (``tests/providers/tiny_pipelines.py``: one builder for tests
    and benchmarks), saved and loaded as the gpu worker's adapter loads a model folder."""
    import tempfile

    import diffusers

    from tests.providers import tiny_pipelines as tiny

    path = Path(tempfile.mkdtemp(prefix="hilapp-tiny-"))
    with tiny.qwen_processor_without_video():
        if fam == FLUX:
            pipe = diffusers.FluxPipeline.from_pretrained(
                tiny.build_tiny_flux(path), local_files_only=True
            )
        else:
            pipe = diffusers.QwenImageEditPlusPipeline.from_pretrained(
                tiny.build_tiny_qwen_edit(path, plus=True), local_files_only=True
            )
    return pipe.to(device=device, dtype=dtype)


def build_flux(device: str, dtype: torch.dtype) -> Any:
    from diffusers import (
        AutoencoderKL,
        FlowMatchEulerDiscreteScheduler,
        FluxPipeline,
        FluxTransformer2DModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel, T5Config, T5EncoderModel

    clip_tok = bpe(
        ["<|pad|>", "<|startoftext|>", "<|endoftext|>"],
        bos_token="<|startoftext|>",
        eos_token="<|endoftext|>",
        pad_token="<|pad|>",
        model_max_length=77,
    )
    t5_tok = bpe(
        ["<pad>", "</s>", "<unk>"],
        pad_token="<pad>",
        eos_token="</s>",
        unk_token="<unk>",
        model_max_length=512,
    )
    with torch.device(device):
        # FLUX.1-dev
        transformer = FluxTransformer2DModel(
            patch_size=1,
            in_channels=64,
            num_layers=19,
            num_single_layers=38,
            attention_head_dim=128,
            num_attention_heads=24,
            joint_attention_dim=4096,
            pooled_projection_dim=768,
            guidance_embeds=True,
            axes_dims_rope=(16, 56, 56),
        )
        clip = CLIPTextModel(  # CLIP ViT-L/14 text tower
            CLIPTextConfig(
                hidden_size=768,
                intermediate_size=3072,
                num_attention_heads=12,
                num_hidden_layers=12,
                vocab_size=49408,
                projection_dim=768,
                hidden_act="quick_gelu",
                eos_token_id=clip_tok.eos_token_id,
            )
        )
        t5 = T5EncoderModel(  # T5 v1.1 XXL encoder
            T5Config(
                vocab_size=32128,
                d_model=4096,
                d_kv=64,
                d_ff=10240,
                num_layers=24,
                num_heads=64,
                feed_forward_proj="gated-gelu",
            )
        )
        blocks = (128, 256, 512, 512)
        vae = AutoencoderKL(
            in_channels=3,
            out_channels=3,
            down_block_types=("DownEncoderBlock2D",) * 4,
            up_block_types=("UpDecoderBlock2D",) * 4,
            block_out_channels=blocks,
            layers_per_block=2,
            latent_channels=16,
            norm_num_groups=32,
            sample_size=1024,
            scaling_factor=0.3611,
            shift_factor=0.1159,
            use_quant_conv=False,
            use_post_quant_conv=False,
        )
    pipe = FluxPipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0, use_dynamic_shifting=True),
        vae=vae,
        text_encoder=clip,
        tokenizer=clip_tok,
        text_encoder_2=t5,
        tokenizer_2=t5_tok,
        transformer=transformer,
    )
    return pipe.to(device=device, dtype=dtype)


def build_qwen(device: str, dtype: torch.dtype, *, plus: bool) -> Any:
    import diffusers
    from diffusers import (
        AutoencoderKLQwenImage,
        FlowMatchEulerDiscreteScheduler,
        QwenImageTransformer2DModel,
    )
    from transformers import (
        Qwen2_5_VLConfig,
        Qwen2_5_VLForConditionalGeneration,
        Qwen2Tokenizer,
        Qwen2VLImageProcessor,
        Qwen2VLProcessor,
    )

    tokenizer = bpe(
        QWEN_SPECIAL,
        cls=Qwen2Tokenizer,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token=None,
        model_max_length=4096,
    )
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in QWEN_SPECIAL}
    # Qwen2.5-VL-7B-Instruct
    text = {
        "hidden_size": 3584,
        "intermediate_size": 18944,
        "num_hidden_layers": 28,
        "num_attention_heads": 28,
        "num_key_value_heads": 4,
        "max_position_embeddings": 128000,
        "rms_norm_eps": 1e-6,
        "rope_scaling": {
            "mrope_section": [16, 24, 24],
            "rope_type": "default",
            "type": "default",
        },
    }
    vision = {
        "depth": 32,
        "hidden_size": 1280,
        "intermediate_size": 3420,
        "num_heads": 16,
        "patch_size": 14,
        "spatial_merge_size": 2,
        "temporal_patch_size": 2,
        "window_size": 112,
        "fullatt_block_indexes": [7, 15, 23, 31],
    }
    hidden = 3584
    config = Qwen2_5_VLConfig(
        text_config={**text, "rope_theta": 1000000.0, "vocab_size": 152064},
        vision_config={**vision, "out_hidden_size": hidden},
        hidden_size=hidden,
        vocab_size=152064,
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
    )
    processor_parts: dict[str, Any] = {
        "image_processor": Qwen2VLImageProcessor(),
        "tokenizer": tokenizer,
    }
    import importlib.util

    if importlib.util.find_spec("torchvision") is not None:
        from transformers import Qwen2VLVideoProcessor

        processor_parts["video_processor"] = Qwen2VLVideoProcessor()
    else:  # transformers 5 insists on a video processor, which needs torchvision; images don't
        Qwen2VLProcessor.get_attributes = classmethod(  # type: ignore[method-assign,assignment]
            lambda cls: ["image_processor", "tokenizer"]
        )
    processor = Qwen2VLProcessor(**processor_parts)
    z_dim = 16
    with torch.device(device):
        text_encoder = Qwen2_5_VLForConditionalGeneration(config)
        # Qwen-Image(-Edit): 60 MMDiT blocks, 24 heads of 128
        transformer = QwenImageTransformer2DModel(
            patch_size=2,
            in_channels=64,
            out_channels=16,
            num_layers=60,
            attention_head_dim=128,
            num_attention_heads=24,
            joint_attention_dim=3584,
            guidance_embeds=False,
            axes_dims_rope=(16, 56, 56),
        )
        vae = AutoencoderKLQwenImage(
            base_dim=96,
            z_dim=z_dim,
            dim_mult=[1, 2, 4, 4],
            num_res_blocks=2,
            attn_scales=[],
            temperal_downsample=[False, True, True],
            dropout=0.0,
        )
    cls = diffusers.QwenImageEditPlusPipeline if plus else diffusers.QwenImageEditPipeline
    pipe = cls(
        scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0, use_dynamic_shifting=True),
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        processor=processor,
        transformer=transformer,
    )
    return pipe.to(device=device, dtype=dtype)


def measure(run: Callable[[], Any], device: str) -> tuple[float, float, Any]:
    """Seconds for ``run``, peak GPU memory (GiB) during it, and what it returned."""
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    result = run()
    if device == "cuda":
        torch.cuda.synchronize()
    elapsed = time.perf_counter() - started
    peak = torch.cuda.max_memory_allocated() / 2**30 if device == "cuda" else float("nan")
    return elapsed, peak, result


def psnr(image: Any, reference: Any) -> float:
    """PSNR (dB) of one 8-bit RGB image against another; inf when they are identical."""
    a = np.asarray(image, dtype=np.float64)
    b = np.asarray(reference, dtype=np.float64)
    mse = float(np.mean((a - b) ** 2))
    return float("inf") if mse == 0 else 10 * math.log10(255.0**2 / mse)


@dataclass
class Row:
    model: str
    profile: str
    images: int
    seconds: float
    peak_gib: float
    ready_s: float  # profile applied + warm-up (compilation) before the first request
    psnr_db: float
    detail: str


def jobs_for(fam: str, size: int, steps: int, n: int) -> list[Job]:
    from PIL import Image

    guidance = 3.5 if fam == FLUX else 4.0
    source = [] if fam == FLUX else [Image.new("RGB", (size, size), (230, 120, 40))]
    return [
        Job(f"{PROMPT} #{i}", list(source), size, size, steps, guidance, seed=i) for i in range(n)
    ]


def bench_profiles(
    name: str, pipe: Any, fam: str, *, plus: bool, args: argparse.Namespace, device: str
) -> list[Row]:
    """Every profile in turn on the same weights (each builds on the last one)."""
    jobs = jobs_for(fam, args.size, args.steps, args.requests)
    rows: list[Row] = []
    reference: list[Any] = []
    for profile in args.profiles:
        torch._dynamo.reset()  # no graphs of the previous profile are reused
        started = time.perf_counter()
        try:
            applied = profiles.apply_profile(pipe, fam, profile, compile_mode=args.compile_mode)
            warm_s = profiles.warm_up_pipeline(
                pipe,
                fam,
                plus=plus,
                sizes=[(args.size, args.size)],
                steps=2,
                guidance=jobs[0].guidance,
                on_shape=lambda key, s: print(f"   warmed {key} in {s:.1f}s", flush=True),
            )
        except Exception:  # later profiles build on this one: report and stop here
            traceback.print_exc()
            print(f"   {name} {profile}: FAILED (above); later profiles skipped", flush=True)
            break
        ready = time.perf_counter() - started

        def render() -> list[Any]:
            return [run_pipeline_batch(pipe, family=fam, plus=plus, jobs=[job])[0] for job in jobs]

        elapsed, peak, images = measure(render, device)
        if profile == profiles.PLAIN or not reference:
            reference = images
        closeness = float(np.mean([psnr(a, b) for a, b in zip(images, reference, strict=True)]))
        row = Row(name, profile, len(jobs), elapsed, peak, ready, closeness, applied.describe())
        print(
            f"   {name} {profile}: {elapsed / len(jobs):.2f} s/image, ready in {ready:.0f}s "
            f"(warm-up {warm_s:.0f}s), peak {peak:.1f} GiB, PSNR {closeness:.1f} dB [{row.detail}]",
            flush=True,
        )
        rows.append(row)
        if args.save_images:
            for i, image in enumerate(images):
                image.save(Path(args.save_images) / f"{fam}-{profile}-{i}.png")
    return rows


def restart_check(args: argparse.Namespace, device: str, dtype: torch.dtype) -> None:
    """A restarted worker: build or load the pipeline, apply the profile, warm up from the cache."""
    fam = FLUX if args.model == "flux" else QWEN_EDIT
    plus = fam == QWEN_EDIT
    started = time.perf_counter()
    if args.load_from:
        import diffusers

        cls = diffusers.FluxPipeline if fam == FLUX else diffusers.QwenImageEditPlusPipeline
        pipe = cls.from_pretrained(args.load_from, local_files_only=True, torch_dtype=dtype)
        pipe = pipe.to(device)
        how = f"loaded from {args.load_from}"
    else:
        pipe = build_flux(device, dtype) if fam == FLUX else build_qwen(device, dtype, plus=True)
        how = "built with random weights (loading from disk not counted)"
    pipe.set_progress_bar_config(disable=True)
    loaded = time.perf_counter() - started
    for profile in args.profiles:
        t0 = time.perf_counter()
        profiles.apply_profile(pipe, fam, profile, compile_mode=args.compile_mode)
        profiles.warm_up_pipeline(
            pipe,
            fam,
            plus=plus,
            sizes=[(args.size, args.size)],
            steps=2,
            guidance=3.5 if fam == FLUX else 4.0,
        )
        warm = time.perf_counter() - t0
        total = time.perf_counter() - started
        print(
            f"restarted worker, {fam} {profile}: ready {total:.1f}s after start "
            f"(pipeline {how} {loaded:.1f}s, profile + warm-up from the compile cache {warm:.1f}s)",
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tiny", action="store_true", help="tiny configs on the CPU (a check)")
    parser.add_argument("--model", choices=["flux", "qwen"], default="flux")
    parser.add_argument("--profiles", default="plain,lossless,fast")
    parser.add_argument("--compile-mode", default="default", choices=profiles.COMPILE_MODES)
    parser.add_argument("--requests", type=int, default=3, help="images per profile")
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--steps", type=int, default=28)
    parser.add_argument("--cache-dir", default="/tmp/inductor-cache", help="compile cache")
    parser.add_argument("--save-images", default="", help="folder for the rendered PNGs")
    parser.add_argument("--save-to", default="", help="save the pipeline here (for --restart)")
    parser.add_argument(
        "--restart", action="store_true", help="time a restarted worker's readiness instead"
    )
    parser.add_argument("--load-from", default="", help="with --restart: load from this folder")
    args = parser.parse_args()
    args.profiles = [profiles.check_profile(p) for p in args.profiles.split(",")]
    profiles.use_compile_cache(args.cache_dir)
    if args.tiny:
        args.size, args.steps = min(args.size, 64), min(args.steps, 2)
        device, dtype = "cpu", torch.float32
    else:
        if not torch.cuda.is_available():
            sys.exit("no CUDA device: run with --tiny for a CPU check")
        device, dtype = "cuda", torch.bfloat16
    logging.basicConfig(level=logging.INFO, format="   %(name)s: %(message)s")
    logging.getLogger("torch").setLevel(logging.WARNING)
    torch.manual_seed(0)
    # Build the random-weight models directly in the target dtype: a 20B transformer in float32
    # would need twice the memory only to be cast down afterwards.
    torch.set_default_dtype(dtype)
    gpu_name = torch.cuda.get_device_name() if device == "cuda" else "cpu"
    print(
        f"torch {torch.__version__}, device {gpu_name}, {args.size}x{args.size}, "
        f"{args.steps} steps, {args.requests} images per profile, compile mode "
        f"{args.compile_mode}, cache {os.environ['TORCHINDUCTOR_CACHE_DIR']}",
        flush=True,
    )
    if args.restart:
        restart_check(args, device, dtype)
        return
    started = time.perf_counter()
    if args.model == "flux":
        name, fam, plus = "flux.1-dev", FLUX, False
        pipe = build_tiny(fam, device, dtype) if args.tiny else build_flux(device, dtype)
    else:
        name, fam, plus = "qwen-image-edit-plus", QWEN_EDIT, True
        pipe = build_tiny(fam, device, dtype) if args.tiny else build_qwen(device, dtype, plus=True)
    pipe.set_progress_bar_config(disable=True)
    params = sum(p.numel() for p in pipe.transformer.parameters()) / 1e9
    print(f"{name}: built in {time.perf_counter() - started:.0f}s, transformer {params:.2f}B")
    if args.save_to:
        t0 = time.perf_counter()
        pipe.save_pretrained(args.save_to)
        print(f"saved to {args.save_to} in {time.perf_counter() - t0:.0f}s", flush=True)
    rows = bench_profiles(name, pipe, fam, plus=plus, args=args, device=device)

    base = next((r for r in rows if r.profile == profiles.PLAIN), rows[0])
    print()
    print(
        f"{'model':<21} {'profile':<9} {'s/image':>8} {'images/s':>9} {'speed-up':>9} "
        f"{'peak GiB':>9} {'ready s':>8} {'PSNR dB':>8}"
    )
    for r in rows:
        rate = r.images / r.seconds
        speedup = rate / (base.images / base.seconds)
        print(
            f"{r.model:<21} {r.profile:<9} {r.seconds / r.images:>8.2f} {rate:>9.3f} "
            f"{speedup:>8.2f}x {r.peak_gib:>9.1f} {r.ready_s:>8.0f} {r.psnr_db:>8.1f}"
        )
    print("ready s: profile applied + warm-up (compilation) before the first request")
    print("PSNR: mean over the images, against plain's images from the same weights and seeds")


if __name__ == "__main__":
    main()
