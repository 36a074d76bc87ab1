"""Throughput of the GPU worker's pipelines: one request at a time vs batched by its batcher.

Builds the real Flux.1-dev and Qwen-Image-Edit architectures at full size (the published
transformer / VAE / text-encoder dimensions, written below) with random weights directly on
the GPU in bf16 (nothing is downloaded; tokenizers are trained here on a few sentences), then
renders 1024x1024 images with 28 steps:

- *sequential*: N requests, one pipeline call each;
- *batched*: N requests submitted at once from N threads through
  ``synthesis.providers.gpu_batcher.MicroBatcher`` and ``run_pipeline_batch`` (the code the
  ``gpu`` worker runs), merged into batches of up to ``--max-batch``.

It prints images/s, seconds per image and peak GPU memory for each. Random weights give noise
images, but the arithmetic (and so the time) is that of the real models.

    python benchmarks/diffusers_throughput.py                 # both models, full size, CUDA
    python benchmarks/diffusers_throughput.py --model flux --requests 4
    python benchmarks/diffusers_throughput.py --tiny          # tiny configs, CPU, seconds

Qwen-Image-Edit-Plus refuses batches (diffusers allows batch size 1 only), so the batched
Qwen figure uses ``QwenImageEditPipeline`` (same transformer, VAE and text encoder; one input
image per prompt); the sequential Qwen figure is given for both pipelines.
"""

from __future__ import annotations

import argparse
import gc
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch

from synthesis.providers.gpu_batcher import (
    FLUX,
    QWEN_EDIT,
    Job,
    MicroBatcher,
    run_pipeline_batch,
)

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


def build_flux(tiny: bool, device: str, dtype: torch.dtype) -> Any:
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
        if tiny:
            transformer = FluxTransformer2DModel(
                patch_size=1,
                in_channels=64,
                num_layers=1,
                num_single_layers=1,
                attention_head_dim=16,
                num_attention_heads=2,
                joint_attention_dim=32,
                pooled_projection_dim=32,
                guidance_embeds=True,
                axes_dims_rope=(4, 6, 6),
            )
            clip = CLIPTextModel(
                CLIPTextConfig(
                    hidden_size=32,
                    intermediate_size=37,
                    num_attention_heads=4,
                    num_hidden_layers=2,
                    vocab_size=49408,
                    projection_dim=32,
                    eos_token_id=clip_tok.eos_token_id,
                )
            )
            t5 = T5EncoderModel(
                T5Config(vocab_size=32128, d_model=32, d_kv=8, d_ff=37, num_layers=2, num_heads=4)
            )
            blocks = (8, 8, 8, 8)
        else:  # FLUX.1-dev
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
            layers_per_block=2 if not tiny else 1,
            latent_channels=16,
            norm_num_groups=32 if not tiny else 4,
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


def build_qwen(tiny: bool, device: str, dtype: torch.dtype, *, plus: bool) -> Any:
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
    if tiny:
        text = {
            "hidden_size": 16,
            "intermediate_size": 16,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "num_key_value_heads": 2,
            "rope_scaling": {"mrope_section": [1, 1, 2], "rope_type": "default", "type": "default"},
        }
        vision = {"depth": 2, "hidden_size": 16, "intermediate_size": 16, "num_heads": 2}
        hidden = 16
    else:  # Qwen2.5-VL-7B-Instruct
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
        if tiny:
            transformer = QwenImageTransformer2DModel(
                patch_size=2,
                in_channels=64,
                out_channels=16,
                num_layers=2,
                attention_head_dim=16,
                num_attention_heads=3,
                joint_attention_dim=hidden,
                guidance_embeds=False,
                axes_dims_rope=(8, 4, 4),
            )
            vae = AutoencoderKLQwenImage(
                base_dim=8,
                z_dim=z_dim,
                dim_mult=[1, 2, 4, 4],
                num_res_blocks=1,
                temperal_downsample=[False, True, True],
            )
        else:  # Qwen-Image(-Edit): 60 MMDiT blocks, 24 heads of 128
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


def measure(run: Callable[[], None], device: str) -> tuple[float, float]:
    """Seconds for ``run`` and peak GPU memory (GiB) during it."""
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    run()
    if device == "cuda":
        torch.cuda.synchronize()
    elapsed = time.perf_counter() - started
    peak = torch.cuda.max_memory_allocated() / 2**30 if device == "cuda" else float("nan")
    return elapsed, peak


def bench(
    name: str,
    pipe: Any,
    fam: str,
    *,
    plus: bool,
    args: argparse.Namespace,
    device: str,
    batched: bool,
) -> list[tuple[str, str, int, float, float]]:
    from PIL import Image

    size, steps = args.size, args.steps
    guidance = 3.5 if fam == FLUX else 4.0
    source = Image.new("RGB", (size, size), (230, 120, 40))
    inputs = [] if fam == FLUX else [source]

    def job(i: int, n_steps: int = steps) -> Job:
        return Job(f"{PROMPT} #{i}", list(inputs), size, size, n_steps, guidance, seed=i)

    run_pipeline_batch(pipe, family=fam, plus=plus, jobs=[job(0, 2)])  # warm-up
    rows = []
    n = args.requests

    def sequential() -> None:
        for i in range(n):
            run_pipeline_batch(pipe, family=fam, plus=plus, jobs=[job(i)])

    elapsed, peak = measure(sequential, device)
    rows.append((name, "sequential", 1, elapsed, peak))
    if batched:
        batcher = MicroBatcher(
            lambda jobs: run_pipeline_batch(pipe, family=fam, plus=plus, jobs=jobs),
            max_batch=args.max_batch,
            max_wait_s=0.05,
            name=name,
        )

        def concurrent() -> None:
            threads = [
                threading.Thread(target=batcher.submit, args=((size, steps, len(inputs)), job(i)))
                for i in range(n)
            ]
            for t in threads:
                t.start()
            for t in threads:
                t.join()

        elapsed, peak = measure(concurrent, device)
        sizes = batcher.batch_sizes
        rows.append((name, f"batched {sizes}", max(sizes), elapsed, peak))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tiny", action="store_true", help="tiny configs on the CPU (a check)")
    parser.add_argument("--model", choices=["flux", "qwen", "all"], default="all")
    parser.add_argument("--requests", type=int, default=4, help="images per measurement")
    parser.add_argument("--max-batch", type=int, default=4)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--steps", type=int, default=28)
    args = parser.parse_args()
    if args.tiny:
        args.size, args.steps = min(args.size, 64), min(args.steps, 2)
        device, dtype = "cpu", torch.float32
    else:
        if not torch.cuda.is_available():
            sys.exit("no CUDA device: run with --tiny for a CPU check")
        device, dtype = "cuda", torch.bfloat16
    torch.manual_seed(0)
    # Build the random-weight models directly in the target dtype: a 20B transformer in float32
    # would need twice the memory only to be cast down afterwards.
    torch.set_default_dtype(dtype)
    gpu_name = torch.cuda.get_device_name() if device == "cuda" else "cpu"
    print(
        f"torch {torch.__version__}, device {gpu_name}, "
        f"{args.size}x{args.size}, {args.steps} steps, {args.requests} requests, "
        f"max batch {args.max_batch}",
        flush=True,
    )
    rows: list[tuple[str, str, int, float, float]] = []
    plan = []
    if args.model in ("flux", "all"):
        plan.append(("flux.1-dev", FLUX, False, True))
    if args.model in ("qwen", "all"):
        plan.append(("qwen-image-edit-plus", QWEN_EDIT, True, False))
        plan.append(("qwen-image-edit", QWEN_EDIT, False, True))
    for name, fam, plus, batched in plan:
        started = time.perf_counter()
        if fam == FLUX:
            pipe = build_flux(args.tiny, device, dtype)
        else:
            pipe = build_qwen(args.tiny, device, dtype, plus=plus)
        pipe.set_progress_bar_config(disable=True)
        params = sum(p.numel() for p in pipe.transformer.parameters()) / 1e9
        print(f"{name}: built in {time.perf_counter() - started:.0f}s, transformer {params:.2f}B")
        new = bench(name, pipe, fam, plus=plus, args=args, device=device, batched=batched)
        rows += new
        del pipe
        gc.collect()
        if device == "cuda":
            torch.cuda.empty_cache()
        for row in new:
            print("  ", row, flush=True)

    print()
    print(f"{'model':<22} {'mode':<22} {'images/s':>9} {'s/image':>8} {'peak GiB':>9}")
    for name, mode, _, elapsed, peak in rows:
        rate = args.requests / elapsed
        print(f"{name:<22} {mode:<22} {rate:>9.3f} {elapsed / args.requests:>8.2f} {peak:>9.1f}")


if __name__ == "__main__":
    main()
