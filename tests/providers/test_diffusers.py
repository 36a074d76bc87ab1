"""The diffusers adapter on tiny Flux and Qwen-Image-Edit pipelines built here (random weights,
local tokenizers), saved with ``save_pretrained`` and loaded through the adapter's own path."""

from __future__ import annotations

import io
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from synthesis.prompts import RenderedPrompt
from synthesis.providers import calls, registry
from synthesis.providers import diffusers as adapter
from synthesis.providers.base import ErrorKind, ImageRequest, ProviderError, Role
from synthesis.providers.routing import RouteEntry
from tests.providers.fakes import png

pytestmark = pytest.mark.gpu

FLUX = RouteEntry("diffusers", "flux")
QWEN = RouteEntry("diffusers", "qwen-image-edit")
PROMPT = RenderedPrompt(name="render_character", version="v1", text="a fox in a lab coat")


@pytest.fixture(scope="module")
def flux_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.providers.tiny_pipelines import build_tiny_flux

    return build_tiny_flux(tmp_path_factory.mktemp("flux"))


@pytest.fixture(scope="module")
def qwen_path(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    from tests.providers.tiny_pipelines import build_tiny_qwen_edit, qwen_processor_without_video

    with qwen_processor_without_video():
        yield build_tiny_qwen_edit(tmp_path_factory.mktemp("qwen"))


@pytest.fixture(autouse=True)
def small_runs(settings: Any) -> Iterator[None]:
    settings.DIFFUSERS_STEPS = 2
    settings.DIFFUSERS_MAX_BATCH = 4
    settings.DIFFUSERS_MAX_WAIT_MS = 50
    adapter.unload_all()
    yield
    adapter.unload_all()


def request(text: str = PROMPT.text, **kwargs: Any) -> ImageRequest:
    prompt = RenderedPrompt(name=PROMPT.name, version=PROMPT.version, text=text)
    kwargs.setdefault("role", Role.CHARACTER_RENDERER)
    return ImageRequest(prompt=prompt, size=(32, 32), **kwargs)


def size_of(data: bytes) -> tuple[int, int]:
    return Image.open(io.BytesIO(data)).size


def test_flux_renders_through_the_ledger(flux_path: Path, settings: Any, db: Any) -> None:
    settings.DIFFUSERS_FLUX_PATH = str(flux_path)
    result, call = calls.call_image(
        request(seed_key="character:1"), calls.CallContext(), entry=FLUX
    )
    assert result.image.startswith(b"\x89PNG") and size_of(result.image) == (32, 32)
    call.refresh_from_db()
    assert (call.status, call.provider, call.model, call.images_out) == (
        "ok",
        "diffusers",
        "flux",
        1,
    )
    assert call.cost_usd > 0  # the per-image price of the table (override for your GPU cost)
    loaded = adapter.load(adapter.FLUX, str(flux_path))
    assert loaded.device == "cpu" and str(loaded.pipe.transformer.dtype) == "torch.float32"
    # Same seed key and try → same image; the pipeline stays loaded (same object).
    again = registry.image_model(FLUX).generate(request(seed_key="character:1"))
    assert again.image == result.image
    assert adapter.load(adapter.FLUX, str(flux_path)) is loaded


def test_concurrent_same_shape_requests_are_one_pipeline_call(
    flux_path: Path, settings: Any
) -> None:
    settings.DIFFUSERS_FLUX_PATH = str(flux_path)
    settings.DIFFUSERS_MAX_WAIT_MS = 1500
    model = registry.image_model(FLUX)
    loaded = adapter.load(adapter.FLUX, str(flux_path))
    calls_made: list[int] = []
    original = loaded.pipe.__call__

    def counting(self: Any, *args: Any, **kwargs: Any) -> Any:
        calls_made.append(len(kwargs["prompt"]))
        return original(*args, **kwargs)

    loaded.pipe.__class__ = type("Counting", (loaded.pipe.__class__,), {"__call__": counting})
    results: dict[int, bytes] = {}

    def render(i: int) -> None:
        results[i] = model.generate(request(f"character number {i}", seed_key=f"c:{i}")).image

    threads = [threading.Thread(target=render, args=(i,)) for i in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)

    assert calls_made == [3] and loaded.batcher.batch_sizes == [3]
    assert len(results) == 3 and len(set(results.values())) == 3  # each got its own image
    # A later request on its own is a call of its own.
    model.generate(request(seed_key="c:9"))
    assert calls_made == [3, 1]


def test_qwen_edit_with_several_images_and_mask(
    qwen_path: Path, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from diffusers.pipelines.qwenimage import pipeline_qwenimage_edit_plus as plus

    from tests.providers.tiny_pipelines import qwen_processor_without_video

    # The Plus pipeline resizes inputs to 1024² for its VAE: fine on a GPU, slow on two CPU
    # cores with even a tiny VAE. The tiny model is shape-agnostic, so shrink that target.
    monkeypatch.setattr(plus, "VAE_IMAGE_SIZE", 32 * 32)
    monkeypatch.setattr(plus, "CONDITION_IMAGE_SIZE", 56 * 56)
    settings.DIFFUSERS_QWEN_EDIT_PATH = str(qwen_path)
    model = registry.image_model(QWEN)
    assert model.max_input_images == 3

    with qwen_processor_without_video():
        result = model.generate(
            request(
                "raise both arms",
                role=Role.REFERENCE_EDITOR,
                images=(png(32, 32), png(32, 32, (0, 0, 200))),
                mask=png(32, 32, (255, 255, 255)),
            )
        )

    assert size_of(result.image) == (32, 32)
    assert result.usage.images_in == 2 and result.usage.images_out == 1
    loaded = adapter.load(adapter.QWEN_EDIT, str(qwen_path))
    assert type(loaded.pipe).__name__ == "QwenImageEditPlusPipeline"
    with pytest.raises(ProviderError) as caught:
        model.generate(request(role=Role.REFERENCE_EDITOR, images=(png(),) * 4))
    assert caught.value.kind == ErrorKind.BAD_REQUEST


def test_missing_weights_are_unavailable_without_retry(
    settings: Any, db: Any, tmp_path: Path
) -> None:
    settings.DIFFUSERS_FLUX_PATH = ""
    with pytest.raises(ProviderError) as caught:
        calls.call_image(request(), calls.CallContext(), entry=FLUX)
    assert caught.value.kind == ErrorKind.UNAVAILABLE and caught.value.permanent
    assert "DIFFUSERS_FLUX_PATH" in str(caught.value)

    settings.DIFFUSERS_FLUX_PATH = str(tmp_path)  # exists, but holds no pipeline
    with pytest.raises(ProviderError) as caught:
        registry.image_model(FLUX).generate(request())
    assert "model_index.json" in str(caught.value)
