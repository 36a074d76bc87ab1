"""Optimisation profiles for the GPU worker's pipelines: ``plain``, ``lossless``, ``fast``.

- ``plain``: the pipeline as diffusers builds it (bf16 on CUDA, float32 on CPU).
- ``lossless``: the transformer's repeated blocks compiled with ``torch.compile`` (regional
  compilation: one graph per block type, compiled once and shared by every block, which keeps
  compile time to a minute instead of many), fused QKV projections, the VAE in
  ``channels_last`` (Flux; Qwen's VAE is 3-D), and the fastest attention kernel this device has
  among PyTorch's own (flash, cuDNN, memory-efficient), picked by timing them at the model's
  shape. Outputs differ from ``plain`` only by float rounding (different fusions and kernels).
- ``fast``: ``lossless`` plus float8 weights and dynamically quantised float8 activations (one
  scale per row of each, torchao's "float8 dynamic, per row" recipe) in the transformer blocks'
  linear layers, computed by ``torch._scaled_mm``. Written here on plain tensors rather than
  through torchao's tensor subclasses: with those, compiling Flux took 230 s on an H200 and
  was not served from the compile cache on restart (measured, see
  ``benchmarks/results/diffusers_profiles_flux_h200.txt``); plain tensors compile like the rest.
  Needs a GPU with float8 matrix units (compute capability 8.9 or later; the CPU runs it too,
  slowly, which is what the tests use); outputs move visibly (see the PSNR the benchmark
  prints).

Kept free of Django: the adapter applies a profile when it loads a pipeline, and
``benchmarks/diffusers_throughput.py`` drives exactly this code.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from synthesis.providers.gpu_batcher import FLUX, Job, run_pipeline_batch

log = logging.getLogger(__name__)

PLAIN, LOSSLESS, FAST = "plain", "lossless", "fast"
PROFILES = (PLAIN, LOSSLESS, FAST)
COMPILE_MODES = ("default", "max-autotune-no-cudagraphs", "max-autotune", "reduce-overhead")

# Linear layers left in bf16 under ``fast``: the adaLN modulations (one vector per image, so
# their cost is reading the weights, and they scale every activation after them) and the
# embedders and output projection outside the blocks.
_KEEP_PRECISE = ("norm1.linear", "norm1_context.linear", "norm.linear", "img_mod", "txt_mod")


class ProfileError(ValueError):
    """A profile that cannot run here (unknown name, no float8 on this device, no torchao)."""


@dataclass
class Applied:
    """What a profile did to a pipeline (logged at worker start, printed by the benchmark)."""

    profile: str
    compiled: bool = False
    compile_mode: str = ""
    fused_qkv: bool = False
    channels_last: bool = False
    attention: str = "native"
    float8_layers: int = 0
    seconds: float = 0.0

    def describe(self) -> str:
        if self.profile == PLAIN:
            return "plain"
        parts = [
            f"compile({self.compile_mode})" if self.compiled else "eager",
            "fused qkv" if self.fused_qkv else "",
            "channels_last vae" if self.channels_last else "",
            f"attention {self.attention}",
            f"float8 x{self.float8_layers}" if self.float8_layers else "",
        ]
        return f"{self.profile}: " + ", ".join(p for p in parts if p)


def check_profile(name: str) -> str:
    value = (name or PLAIN).strip().lower()
    if value not in PROFILES:
        raise ProfileError(f"diffusers profile {name!r}: expected one of {', '.join(PROFILES)}")
    return value


def check_compile_mode(mode: str) -> str:
    value = (mode or "default").strip().lower()
    if value not in COMPILE_MODES:
        raise ProfileError(f"compile mode {mode!r}: expected one of {', '.join(COMPILE_MODES)}")
    return value


def use_compile_cache(directory: str | Path) -> Path:
    """Keep inductor's and Triton's compiled kernels in ``directory`` (kept across restarts).

    A variable already set in the environment wins: the operator chose it.
    """
    path = Path(directory)
    path.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(path))
    os.environ.setdefault("TRITON_CACHE_DIR", str(path / "triton"))
    return Path(os.environ["TORCHINDUCTOR_CACHE_DIR"])


def float8_supported() -> bool:
    """Float8 matrix products here: a CUDA GPU of compute capability 8.9+, or the CPU (checks)."""
    import torch

    if not hasattr(torch, "float8_e4m3fn") or not hasattr(torch, "_scaled_mm"):
        return False
    if torch.cuda.is_available():
        return torch.cuda.get_device_capability() >= (8, 9)
    return True


def require_profile_runs_here(profile: str) -> None:
    """Refuse at load time, with the reason, a profile this machine cannot run."""
    if profile == FAST and not float8_supported():
        raise ProfileError(
            "diffusers profile 'fast' needs float8 matrix products: a CUDA GPU of compute "
            "capability 8.9+ (L4, H100, H200, ...) and torch 2.5+; use 'lossless' here"
        )


def apply_profile(
    pipe: Any, fam: str, profile: str, *, compile_mode: str = "default", attention: str = "auto"
) -> Applied:
    """Change ``pipe`` in place for ``profile``; compilation itself happens on the first call."""
    profile = check_profile(profile)
    compile_mode = check_compile_mode(compile_mode)
    require_profile_runs_here(profile)
    applied = Applied(profile)
    if profile == PLAIN:
        return applied
    started = time.perf_counter()
    transformer = pipe.transformer
    applied.fused_qkv = fuse_qkv(transformer, fam)
    applied.channels_last = vae_channels_last(pipe, fam)
    applied.attention = set_attention(transformer, attention)
    if profile == FAST:
        applied.float8_layers = quantize_float8(transformer)
    import torch

    transformer.compile_repeated_blocks(fullgraph=True, mode=compile_mode)
    # The text length of Qwen prompts changes with every prompt; after the warm-up has seen two
    # lengths dynamo makes that dimension symbolic instead of compiling each new length.
    torch._dynamo.config.automatic_dynamic_shapes = True
    applied.compiled, applied.compile_mode = True, compile_mode
    applied.seconds = time.perf_counter() - started
    log.info("diffusers %s profile applied in %.1fs: %s", fam, applied.seconds, applied.describe())
    return applied


def fuse_qkv(transformer: Any, fam: str) -> bool:
    """One matrix product for Q, K and V (and one for the text stream's) instead of three."""
    if fam == FLUX:
        transformer.fuse_qkv_projections()
        return True
    from diffusers.models.attention_processor import Attention

    done = False
    for module in transformer.modules():
        if isinstance(module, Attention) and module.added_kv_proj_dim is not None:
            if not getattr(module, "fused_projections", False):
                module.fuse_projections()
            module.set_processor(FusedQwenDoubleStreamAttnProcessor())  # type: ignore[arg-type]
            done = True
    return done


def vae_channels_last(pipe: Any, fam: str) -> bool:
    import torch

    if fam != FLUX:  # Qwen's VAE convolves in 3-D (video layout): no 2-D channels_last there
        return False
    pipe.vae.to(memory_format=torch.channels_last)
    return True


def set_attention(transformer: Any, attention: str) -> str:
    """The named diffusers attention backend, or with ``auto`` the fastest native one here."""
    import torch

    if attention == "auto":
        if not torch.cuda.is_available():
            return "native"
        heads = transformer.config.num_attention_heads
        head_dim = transformer.config.attention_head_dim
        attention = fastest_sdpa_backend(heads, head_dim, seq=4608)
    if attention != "native":
        transformer.set_attention_backend(attention)
    return attention


def fastest_sdpa_backend(heads: int, head_dim: int, *, seq: int) -> str:
    """Time PyTorch's attention kernels at one model shape; the diffusers name of the fastest."""
    import torch
    from torch.nn.attention import SDPBackend, sdpa_kernel

    candidates = {
        "_native_cudnn": SDPBackend.CUDNN_ATTENTION,
        "_native_flash": SDPBackend.FLASH_ATTENTION,
        "_native_efficient": SDPBackend.EFFICIENT_ATTENTION,
    }
    q, k, v = (
        torch.randn(1, heads, seq, head_dim, device="cuda", dtype=torch.bfloat16) for _ in range(3)
    )
    times: dict[str, float] = {}
    for name, backend in candidates.items():
        try:
            with sdpa_kernel(backend):
                for _ in range(3):
                    torch.nn.functional.scaled_dot_product_attention(q, k, v)
                start, end = (
                    torch.cuda.Event(enable_timing=True),
                    torch.cuda.Event(enable_timing=True),
                )
                start.record()
                for _ in range(10):
                    torch.nn.functional.scaled_dot_product_attention(q, k, v)
                end.record()
                torch.cuda.synchronize()
                times[name] = start.elapsed_time(end) / 10
        except RuntimeError as exc:  # a kernel this device or build lacks
            log.info("attention kernel %s unavailable: %s", name, exc)
    if not times:
        return "native"
    best = min(times, key=times.__getitem__)
    log.info("attention kernels (ms at seq %d): %s -> %s", seq, times, best)
    return best


def quantize_float8(transformer: Any) -> int:
    """Swap the blocks' linear layers for ``Float8Linear``; the number swapped."""
    import torch

    from synthesis.providers.diffusers_float8 import Float8Linear

    chosen = [
        (name, module)
        for name, module in transformer.named_modules()
        if isinstance(module, torch.nn.Linear)
        and "transformer_blocks." in name
        and not any(part in name for part in _KEEP_PRECISE)
        and module.in_features % 16 == 0
        and module.out_features % 16 == 0
    ]
    for name, module in chosen:
        parent_name, _, child = name.rpartition(".")
        setattr(transformer.get_submodule(parent_name), child, Float8Linear.from_linear(module))
    return len(chosen)


@dataclass
class WarmedShapes:
    """The shapes compiled at worker start; a call of another shape is compiled and reported."""

    keys: set[Hashable] = field(default_factory=set)
    unwarmed_calls: int = 0  # calls that had to compile a shape after start (each is logged)

    def check(self, key: Hashable, what: str) -> bool:
        """True (and a warning) the first time ``key`` is seen outside the warmed set."""
        if key in self.keys:
            return False
        self.unwarmed_calls += 1
        log.warning(
            "%s: shape %s was not warmed up at worker start (warmed: %s); compiling it now, "
            "which can take minutes: add it to DIFFUSERS_WARMUP_SIZES",
            what,
            key,
            sorted(self.keys, key=str) or "none",
        )
        self.keys.add(key)
        return True


def shape_key(fam: str, plus: bool, width: int, height: int, inputs: Sequence[Any]) -> Hashable:
    """What decides the transformer's compiled shapes: output size and the inputs' token grids.

    The edit pipelines resize each input to a fixed area keeping its aspect ratio, so inputs of
    one aspect ratio share a shape whatever their pixel size.
    """
    if fam == FLUX:
        return (width, height)
    from diffusers.pipelines.qwenimage import pipeline_qwenimage_edit_plus as plus_module

    area = plus_module.VAE_IMAGE_SIZE if plus else 1024 * 1024
    grids = tuple(plus_module.calculate_dimensions(area, w / h)[:2] for w, h in _sizes(inputs))
    return (width, height, grids)


def _sizes(inputs: Sequence[Any]) -> list[tuple[int, int]]:
    return [image.size if hasattr(image, "size") else tuple(image) for image in inputs]


def warm_up_pipeline(
    pipe: Any,
    fam: str,
    *,
    plus: bool,
    sizes: Sequence[tuple[int, int]],
    edit_inputs: Sequence[int] = (1,),
    steps: int = 2,
    guidance: float = 4.0,
    on_shape: Callable[[Hashable, float], None] | None = None,
    warmed: WarmedShapes | None = None,
) -> float:
    """Run each configured shape through the pipeline so that it is compiled before work comes.

    Two prompts of different lengths per shape: the second lets dynamo make the text length
    symbolic, so later prompts do not compile again. Returns the seconds taken.
    """
    from PIL import Image

    started = time.perf_counter()
    prompts = ["a character", "a character in a long coat, full body, plain white background"]
    for width, height in sizes:
        counts = [0] if fam == FLUX else list(edit_inputs)
        for count in counts:
            inputs = [Image.new("RGB", (width, height), (200, 120, 40))] * count
            t0 = time.perf_counter()
            for i, prompt in enumerate(prompts):
                job = Job(prompt, list(inputs), width, height, steps, guidance, seed=i)
                run_pipeline_batch(pipe, family=fam, plus=plus, jobs=[job])
            key = shape_key(fam, plus, width, height, inputs)
            if warmed is not None:
                warmed.keys.add(key)
            if on_shape is not None:
                on_shape(key, time.perf_counter() - t0)
    return time.perf_counter() - started


class FusedQwenDoubleStreamAttnProcessor:
    """Qwen-Image's joint attention with the fused ``to_qkv`` / ``to_added_qkv`` projections.

    The same computation as diffusers' ``QwenDoubleStreamAttnProcessor2_0`` (which always runs
    six separate projections), with one matrix product per stream.
    """

    _attention_backend = None
    _parallel_config = None

    def __call__(
        self,
        attn: Any,
        hidden_states: Any,
        encoder_hidden_states: Any = None,
        encoder_hidden_states_mask: Any = None,
        attention_mask: Any = None,
        image_rotary_emb: Any = None,
    ) -> Any:
        import torch
        from diffusers.models.attention_dispatch import dispatch_attention_fn

        if encoder_hidden_states is None or attention_mask is not None:
            raise ValueError("joint attention takes the text stream and no external mask")
        if encoder_hidden_states_mask is not None:
            image_mask = torch.ones(
                hidden_states.shape[:2], dtype=torch.bool, device=hidden_states.device
            )
            attention_mask = torch.cat([encoder_hidden_states_mask, image_mask], dim=1)
            attention_mask = attention_mask[:, None, None, :]
        seq_txt = encoder_hidden_states.shape[1]
        head_dim = attn.inner_dim // attn.heads
        img_q, img_k, img_v = (
            t.unflatten(-1, (-1, head_dim)) for t in attn.to_qkv(hidden_states).chunk(3, dim=-1)
        )
        txt_q, txt_k, txt_v = (
            t.unflatten(-1, (-1, head_dim))
            for t in attn.to_added_qkv(encoder_hidden_states).chunk(3, dim=-1)
        )
        if attn.norm_q is not None:
            img_q = attn.norm_q(img_q)
        if attn.norm_k is not None:
            img_k = attn.norm_k(img_k)
        if attn.norm_added_q is not None:
            txt_q = attn.norm_added_q(txt_q)
        if attn.norm_added_k is not None:
            txt_k = attn.norm_added_k(txt_k)
        if image_rotary_emb is not None:
            img_freqs, txt_freqs = image_rotary_emb
            img_q, img_k = _rope(img_q, img_freqs), _rope(img_k, img_freqs)
            txt_q, txt_k = _rope(txt_q, txt_freqs), _rope(txt_k, txt_freqs)
        joint = dispatch_attention_fn(
            torch.cat([txt_q, img_q], dim=1),
            torch.cat([txt_k, img_k], dim=1),
            torch.cat([txt_v, img_v], dim=1),
            attn_mask=attention_mask,
            dropout_p=0.0,
            is_causal=False,
            backend=self._attention_backend,
            parallel_config=self._parallel_config,
        )
        joint = joint.flatten(2, 3).to(img_q.dtype)
        img_out = attn.to_out[0](joint[:, seq_txt:, :].contiguous())
        if len(attn.to_out) > 1:
            img_out = attn.to_out[1](img_out)
        txt_out = attn.to_add_out(joint[:, :seq_txt, :].contiguous())
        return img_out, txt_out


def _rope(x: Any, freqs: Any) -> Any:
    """diffusers' complex-valued ``apply_rotary_emb_qwen`` in real arithmetic.

    The same products on (even, odd) pairs, which inductor fuses into one kernel; the complex
    multiply is an operation it cannot generate code for (one unfused kernel per call).
    """
    import torch

    pairs = x.float().unflatten(-1, (-1, 2))
    even, odd = pairs[..., 0], pairs[..., 1]
    rot = torch.view_as_real(freqs).unsqueeze(1)  # (seq, 1, dim/2, 2): cos, sin
    cos, sin = rot[..., 0], rot[..., 1]
    out = torch.stack([even * cos - odd * sin, even * sin + odd * cos], dim=-1)
    return out.flatten(3).type_as(x)
