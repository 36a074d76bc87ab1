"""Local GPU models through diffusers: Flux (text-to-image), Qwen-Image-Edit (editing).

- ``diffusers:flux…`` serves ``character_renderer`` from ``DIFFUSERS_FLUX_PATH``;
  ``diffusers:qwen-image-edit…`` serves ``reference_editor`` / ``local_editor`` from
  ``DIFFUSERS_QWEN_EDIT_PATH`` (``QwenImageEditPlusPipeline``, multi-image, where the installed
  diffusers has it; else ``QwenImageEditPipeline``, one image). Option ``path`` overrides.
- Weights only from that local directory (``local_files_only``); bf16 on CUDA, float32 on CPU.
  A pipeline is loaded once per process and kept (the ``gpu`` worker holds it in memory).
- Concurrent requests of the same shape are merged into one pipeline call by a micro-batcher
  (``DIFFUSERS_MAX_BATCH``, ``DIFFUSERS_MAX_WAIT_MS``). ``QwenImageEditPlusPipeline`` refuses
  batches larger than one (a diffusers limitation), so Plus edits run one at a time.
- Each request's noise comes from its ``seed_key`` and try number, so a retry renders anew and
  a rerun renders the same.
- ``DIFFUSERS_PROFILE`` picks the worker's optimisation profile (``plain``, ``lossless``,
  ``fast``: ``diffusers_profiles``). Compiled profiles run one image at a time (the GPU is full
  at batch 1, and every batch size would be one more compiled shape), are warmed up on
  ``DIFFUSERS_WARMUP_SIZES`` before a gpu worker consumes (``warm_up_configured``, called from
  the worker's start), and log a warning and count each call whose shape was not warmed.
"""

from __future__ import annotations

import hashlib
import io
import logging
import threading
import time
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.conf import settings

from hilapp.imaging import to_png
from synthesis.providers import diffusers_profiles as profiles
from synthesis.providers.base import (
    ErrorKind,
    ImageModel,
    ImageRequest,
    ImageResult,
    ProviderError,
    Usage,
)
from synthesis.providers.gpu_batcher import FLUX, QWEN_EDIT, Job, MicroBatcher, run_pipeline_batch

log = logging.getLogger(__name__)

DEFAULT_GUIDANCE = {FLUX: 3.5, QWEN_EDIT: 4.0}
PLUS_MAX_INPUTS = 3


def family(model: str) -> str:
    name = model.lower()
    if name.startswith("flux"):
        return FLUX
    if name.startswith("qwen-image-edit") or name.startswith("qwen_image_edit"):
        return QWEN_EDIT
    raise ProviderError(
        f"diffusers model {model!r}: expected a name starting with 'flux' or 'qwen-image-edit'",
        kind=ErrorKind.BAD_REQUEST,
    )


def _has_plus() -> bool:
    import diffusers

    return hasattr(diffusers, "QwenImageEditPlusPipeline")


@dataclass
class Loaded:
    pipe: Any
    family: str
    plus: bool
    device: str
    batcher: MicroBatcher
    applied: profiles.Applied
    warmed: profiles.WarmedShapes


_loaded: dict[tuple[str, str], Loaded] = {}
_load_lock = threading.Lock()


def _weights_path(fam: str, options: dict[str, Any]) -> str:
    path = str(options.get("path") or "")
    if not path:
        path = settings.DIFFUSERS_FLUX_PATH if fam == FLUX else settings.DIFFUSERS_QWEN_EDIT_PATH
    setting = "DIFFUSERS_FLUX_PATH" if fam == FLUX else "DIFFUSERS_QWEN_EDIT_PATH"
    if not path:
        raise ProviderError(
            f"{setting} is not set: point it at a local {fam} pipeline directory "
            "(save_pretrained layout with model_index.json)",
            kind=ErrorKind.UNAVAILABLE,
            permanent=True,
        )
    if not (Path(path) / "model_index.json").is_file():
        raise ProviderError(
            f"{setting}={path!r} is not a diffusers pipeline directory (no model_index.json); "
            "weights are only read locally, never downloaded",
            kind=ErrorKind.UNAVAILABLE,
            permanent=True,
        )
    return path


def load(fam: str, path: str) -> Loaded:
    """The pipeline for (family, path), loaded on first use and kept for the process."""
    with _load_lock:
        if (fam, path) in _loaded:
            return _loaded[(fam, path)]
        import diffusers
        import torch

        cuda = torch.cuda.is_available()
        dtype = torch.bfloat16 if cuda else torch.float32
        plus = fam == QWEN_EDIT and _has_plus()
        cls: Any
        if fam == FLUX:
            cls = diffusers.FluxPipeline
        elif plus:
            cls = diffusers.QwenImageEditPlusPipeline
        else:
            cls = diffusers.QwenImageEditPipeline
        log.info(
            "loading %s from %s (%s, %s)", cls.__name__, path, "cuda" if cuda else "cpu", dtype
        )
        try:
            pipe = cls.from_pretrained(path, local_files_only=True, torch_dtype=dtype)
        except (OSError, ValueError) as exc:
            raise ProviderError(
                f"cannot load {cls.__name__} from {path!r}: {exc}",
                kind=ErrorKind.UNAVAILABLE,
                permanent=True,
            ) from exc
        device = "cuda" if cuda else "cpu"
        pipe = pipe.to(device)
        pipe.set_progress_bar_config(disable=True)
        applied = _apply_configured_profile(pipe, fam)
        max_batch = 1 if plus or applied.compiled else int(settings.DIFFUSERS_MAX_BATCH)
        loaded = Loaded(pipe, fam, plus, device, None, applied, profiles.WarmedShapes())  # type: ignore[arg-type]
        loaded.batcher = MicroBatcher(
            lambda jobs: _run_batch(loaded, jobs),
            max_batch=max_batch,
            max_wait_s=float(settings.DIFFUSERS_MAX_WAIT_MS) / 1000,
            name=f"{fam}",
        )
        _loaded[(fam, path)] = loaded
        return loaded


def _apply_configured_profile(pipe: Any, fam: str) -> profiles.Applied:
    profile = settings.DIFFUSERS_PROFILE
    if profile != profiles.PLAIN:
        profiles.use_compile_cache(settings.DIFFUSERS_COMPILE_CACHE_DIR)
    try:
        return profiles.apply_profile(
            pipe, fam, profile, compile_mode=settings.DIFFUSERS_COMPILE_MODE
        )
    except profiles.ProfileError as exc:
        raise ProviderError(
            f"DIFFUSERS_PROFILE={profile}: {exc}", kind=ErrorKind.UNAVAILABLE, permanent=True
        ) from exc


def warmup_sizes() -> list[tuple[int, int]]:
    """``DIFFUSERS_WARMUP_SIZES`` as (width, height) pairs; a clear error for a bad entry."""
    sizes = []
    for entry in settings.DIFFUSERS_WARMUP_SIZES:
        width, _, height = entry.lower().partition("x")
        if not (width.isdigit() and height.isdigit() and int(width) > 0 and int(height) > 0):
            raise ProviderError(
                f"DIFFUSERS_WARMUP_SIZES entry {entry!r}: expected WIDTHxHEIGHT, e.g. 1024x1024",
                kind=ErrorKind.BAD_REQUEST,
                permanent=True,
            )
        sizes.append((int(width), int(height)))
    return sizes


def warmup_edit_inputs() -> list[int]:
    counts = []
    for entry in settings.DIFFUSERS_WARMUP_EDIT_INPUTS:
        if not entry.isdigit() or not 1 <= int(entry) <= PLUS_MAX_INPUTS:
            raise ProviderError(
                f"DIFFUSERS_WARMUP_EDIT_INPUTS entry {entry!r}: expected 1 to {PLUS_MAX_INPUTS}",
                kind=ErrorKind.BAD_REQUEST,
                permanent=True,
            )
        counts.append(int(entry))
    return counts


def warm_up_configured() -> dict[str, float]:
    """Load every configured pipeline, apply the profile and compile the configured shapes.

    Called once at gpu worker start, before it consumes. Returns seconds per family (load,
    profile and warm-up). Under ``plain`` nothing is compiled, so only the loading is done here.
    """
    done: dict[str, float] = {}
    sizes, counts = warmup_sizes(), warmup_edit_inputs()
    for fam, path in (
        (FLUX, settings.DIFFUSERS_FLUX_PATH),
        (QWEN_EDIT, settings.DIFFUSERS_QWEN_EDIT_PATH),
    ):
        if not path:
            continue
        started = time.perf_counter()
        loaded = load(fam, _weights_path(fam, {}))
        if loaded.applied.compiled:
            profiles.warm_up_pipeline(
                loaded.pipe,
                fam,
                plus=loaded.plus,
                sizes=sizes,
                edit_inputs=counts if loaded.plus else [1],
                guidance=DEFAULT_GUIDANCE[fam],
                on_shape=lambda key, seconds, fam=fam: log.info(  # type: ignore[misc]
                    "diffusers %s: warmed shape %s in %.1fs", fam, key, seconds
                ),
                warmed=loaded.warmed,
            )
        done[fam] = time.perf_counter() - started
        log.info("diffusers %s ready in %.1fs (%s)", fam, done[fam], loaded.applied.describe())
    return done


def unload_all() -> None:
    """Forget loaded pipelines (tests; a worker that must free GPU memory)."""
    with _load_lock:
        _loaded.clear()


def _seed(request: ImageRequest) -> int:
    text = f"{request.seed_key}|{request.try_number}|{request.prompt.text}"
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big") >> 1


def _run_batch(loaded: Loaded, jobs: Sequence[Job]) -> list[bytes]:
    first = jobs[0]
    unwarmed = loaded.applied.compiled and loaded.warmed.check(
        profiles.shape_key(loaded.family, loaded.plus, first.width, first.height, first.images),
        f"diffusers {loaded.family} ({loaded.applied.profile})",
    )
    started = time.perf_counter()
    images = run_pipeline_batch(loaded.pipe, family=loaded.family, plus=loaded.plus, jobs=jobs)
    if unwarmed:
        log.warning(
            "diffusers %s: the call that compiled %dx%d took %.1fs",
            loaded.family,
            first.width,
            first.height,
            time.perf_counter() - started,
        )
    return [to_png(image) for image in images]


class DiffusersImage(ImageModel):
    provider = "diffusers"

    def __init__(self, model: str, options: dict[str, Any] | None = None) -> None:
        super().__init__(model, options)
        self.family = family(model)
        # Flux renders from text alone; Plus edits with up to three images, the plain edit one.
        if self.family == QWEN_EDIT:
            self.max_input_images = PLUS_MAX_INPUTS if _has_plus() else 1  # type: ignore[misc]

    def _steps(self) -> int:
        return int(self.options.get("steps") or settings.DIFFUSERS_STEPS)

    def _guidance(self) -> float:
        value = self.options.get("guidance") or settings.DIFFUSERS_GUIDANCE
        return float(value) if value else DEFAULT_GUIDANCE[self.family]

    def generate(self, request: ImageRequest) -> ImageResult:
        loaded = load(self.family, _weights_path(self.family, self.options))
        width, height = request.size
        images = [_decode(image) for image in request.images]
        prompt = request.prompt.text
        if self.family == FLUX and images:
            raise ProviderError(
                f"{self.model} renders from text only; use qwen-image-edit for edits",
                kind=ErrorKind.BAD_REQUEST,
            )
        if self.family == QWEN_EDIT:
            limit = self.max_input_images or 1
            if not images:
                raise ProviderError(
                    f"{self.model} edits an input image; none given", kind=ErrorKind.BAD_REQUEST
                )
            if request.mask is not None and len(images) < limit:
                images.append(_decode(request.mask))
                prompt += "\nThe last image is a mask: change only its white area."
            if len(images) > limit:
                raise ProviderError(
                    f"{self.model} takes at most {limit} input images, got {len(images)}",
                    kind=ErrorKind.BAD_REQUEST,
                )
        job = Job(prompt, images, width, height, self._steps(), self._guidance(), _seed(request))
        key: Hashable = (
            width,
            height,
            job.steps,
            job.guidance,
            len(images),
            tuple(image.size for image in images),
        )
        try:
            png = loaded.batcher.submit(key, job)
        except ProviderError:
            raise
        except Exception as exc:
            kind = (
                ErrorKind.UNAVAILABLE if "out of memory" in str(exc).lower() else ErrorKind.SERVER
            )
            raise ProviderError(f"{self.model} pipeline failed: {exc!r}", kind=kind) from exc
        return ImageResult(image=png, usage=Usage(images_in=len(request.images), images_out=1))


def _decode(data: bytes) -> Any:
    from PIL import Image, UnidentifiedImageError

    try:
        image = Image.open(io.BytesIO(data))
        image.load()
    except (UnidentifiedImageError, OSError) as exc:
        raise ProviderError(f"input image unreadable: {exc}", kind=ErrorKind.BAD_REQUEST) from exc
    return image.convert("RGB")


IMAGE_MODEL = DiffusersImage
