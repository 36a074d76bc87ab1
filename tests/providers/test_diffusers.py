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
    kwargs.setdefault("size", (32, 32))
    return ImageRequest(prompt=prompt, **kwargs)


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


# --- Optimisation profiles (issue 16): the tiny pipelines under lossless and fast on the CPU ---


def psnr(a: bytes, b: bytes) -> float:
    import numpy as np

    x = np.asarray(Image.open(io.BytesIO(a)), dtype=np.float64)
    y = np.asarray(Image.open(io.BytesIO(b)), dtype=np.float64)
    mse = float(np.mean((x - y) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


@pytest.fixture
def compiled(settings: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Compiled profiles with a compile cache of the test session; dynamo forgets after."""
    import torch

    settings.DIFFUSERS_COMPILE_CACHE_DIR = str(tmp_path_factory.getbasetemp() / "inductor")
    settings.DIFFUSERS_WARMUP_SIZES = ["32x32"]
    settings.DIFFUSERS_WARMUP_EDIT_INPUTS = ["1"]
    yield
    torch._dynamo.reset()


def plain_image(model: Any, req: ImageRequest, settings: Any) -> bytes:
    settings.DIFFUSERS_PROFILE = "plain"
    image = model.generate(req).image
    adapter.unload_all()
    return image


@pytest.mark.parametrize("profile", ["lossless", "fast"])
def test_flux_profile_compiles_at_warm_up_and_stays_close_to_plain(
    profile: str, flux_path: Path, settings: Any, compiled: None, caplog: Any
) -> None:
    settings.DIFFUSERS_FLUX_PATH = str(flux_path)
    model = registry.image_model(FLUX)
    plain = plain_image(model, request(seed_key="p:1"), settings)
    settings.DIFFUSERS_PROFILE = profile

    ready = adapter.warm_up_configured()

    assert list(ready) == [adapter.FLUX]
    loaded = adapter.load(adapter.FLUX, str(flux_path))
    applied = loaded.applied
    assert (applied.profile, applied.compiled, applied.fused_qkv) == (profile, True, True)
    assert (applied.float8_layers > 0) == (profile == "fast")
    assert loaded.warmed.keys == {(32, 32)} and loaded.batcher.max_batch == 1
    image = model.generate(request(seed_key="p:1")).image
    assert size_of(image) == (32, 32) and loaded.warmed.unwarmed_calls == 0
    assert psnr(image, plain) > (40 if profile == "lossless" else 25)
    if profile == "fast":
        return
    # A size that was not warmed up is compiled on the spot, with a warning, and counted.
    with caplog.at_level("WARNING", logger="synthesis.providers"):
        other = model.generate(request(seed_key="p:2", size=(48, 48))).image
    assert size_of(other) == (48, 48) and loaded.warmed.unwarmed_calls == 1
    assert "(48, 48) was not warmed up" in caplog.text
    model.generate(request(seed_key="p:3", size=(48, 48)))  # reported once per shape
    assert loaded.warmed.unwarmed_calls == 1


@pytest.mark.parametrize("profile", ["lossless", "fast"])
def test_qwen_edit_profile_compiles_at_warm_up_and_stays_close_to_plain(
    profile: str,
    qwen_path: Path,
    settings: Any,
    compiled: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from diffusers.pipelines.qwenimage import pipeline_qwenimage_edit_plus as plus

    from tests.providers.tiny_pipelines import qwen_processor_without_video

    monkeypatch.setattr(plus, "VAE_IMAGE_SIZE", 32 * 32)  # as above: small on two CPU cores
    monkeypatch.setattr(plus, "CONDITION_IMAGE_SIZE", 56 * 56)
    settings.DIFFUSERS_QWEN_EDIT_PATH = str(qwen_path)
    model = registry.image_model(QWEN)
    edit = request("raise both arms", role=Role.REFERENCE_EDITOR, images=(png(32, 32),))
    with qwen_processor_without_video():
        plain = plain_image(model, edit, settings)
        settings.DIFFUSERS_PROFILE = profile
        adapter.warm_up_configured()
        loaded = adapter.load(adapter.QWEN_EDIT, str(qwen_path))
        image = model.generate(edit).image

    assert loaded.applied.compiled and loaded.applied.fused_qkv
    assert (loaded.applied.float8_layers > 0) == (profile == "fast")
    assert loaded.warmed.keys == {(32, 32, ((32, 32),))} and loaded.warmed.unwarmed_calls == 0
    assert size_of(image) == (32, 32)
    assert psnr(image, plain) > (40 if profile == "lossless" else 25)


def test_fast_profile_is_refused_where_float8_is_missing(
    flux_path: Path, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from synthesis.providers import diffusers_profiles

    monkeypatch.setattr(diffusers_profiles, "float8_supported", lambda: False)
    settings.DIFFUSERS_FLUX_PATH = str(flux_path)
    settings.DIFFUSERS_PROFILE = "fast"
    with pytest.raises(ProviderError) as caught:
        adapter.load(adapter.FLUX, str(flux_path))
    assert caught.value.kind == ErrorKind.UNAVAILABLE and caught.value.permanent
    assert "float8" in str(caught.value) and "lossless" in str(caught.value)


def fake_worker(*queues: str) -> Any:
    from types import SimpleNamespace

    consume_from = dict.fromkeys(queues)
    return SimpleNamespace(
        app=SimpleNamespace(amqp=SimpleNamespace(queues=SimpleNamespace(consume_from=consume_from)))
    )


def test_gpu_worker_start_stops_on_a_bad_warm_up_and_other_workers_skip_it(
    flux_path: Path, settings: Any
) -> None:
    from synthesis.providers.diffusers_worker import warm_up_if_gpu_worker

    settings.DIFFUSERS_FLUX_PATH = str(flux_path)
    settings.DIFFUSERS_WARMUP_SIZES = ["huge"]
    warm_up_if_gpu_worker(fake_worker("celery", "api"))  # not a gpu worker: nothing loaded
    assert adapter._loaded == {}
    with pytest.raises(SystemExit) as caught:
        warm_up_if_gpu_worker(fake_worker("gpu"))
    assert "DIFFUSERS_WARMUP_SIZES entry 'huge'" in str(caught.value)


@pytest.mark.worker
@pytest.mark.redis
def test_real_gpu_worker_consumes_only_after_its_warm_up(
    flux_path: Path, celery_workers: Any, tmp_path: Path
) -> None:
    """A gpu worker with a compiled profile leaves the queue alone until its warm-up is done."""
    import subprocess
    import sys
    import time

    import redis

    from hilapp.celery import app
    from tests.conftest import ROOT, wait_until

    # A Redis broker of its own on either pass (the queue length is read from Redis).
    broker_url = "redis://127.0.0.1:6379/13"
    broker = redis.Redis.from_url(broker_url)
    broker.delete("gpu")
    with app.connection_for_write(broker_url) as connection:
        # waiting before the worker starts
        app.send_task("tests.probe_not_a_task", queue="gpu", connection=connection)
    assert broker.llen("gpu") == 1
    env = dict(
        celery_workers.env,
        CELERY_BROKER_URL=broker_url,
        DIFFUSERS_FLUX_PATH=str(flux_path),
        DIFFUSERS_PROFILE="lossless",
        DIFFUSERS_WARMUP_SIZES="32x32",
        DIFFUSERS_STEPS="2",
        DIFFUSERS_COMPILE_CACHE_DIR=str(tmp_path / "inductor"),  # empty: a full compile
    )
    for inherited in ("TORCHINDUCTOR_CACHE_DIR", "TRITON_CACHE_DIR"):  # set by tests before
        env.pop(inherited, None)
    log_path = tmp_path / "gpu-worker.log"
    with open(log_path, "wb") as log:
        command = [sys.executable, "-m", "celery", "-A", "hilapp", "worker", "-Q", "gpu"]
        command += ["--pool", "threads", "--concurrency", "2", "--loglevel", "INFO"]
        command += ["-n", "gpu0@%h", "--without-gossip", "--without-mingle", "--without-heartbeat"]
        proc = subprocess.Popen(
            command,
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    celery_workers.procs.append(proc)  # stopped by the fixture

    def text() -> str:
        return log_path.read_text(errors="replace")

    wait_until(lambda: "warming up" in text(), timeout=120, message="the warm-up to start")
    polls = 0
    while "warm-up finished" not in text():
        assert proc.poll() is None, text()
        assert broker.llen("gpu") == 1, "consumed during the warm-up:\n" + text()
        polls += 1
        time.sleep(0.5)
    assert polls >= 4, "the warm-up was too short to observe"  # compiling takes seconds
    wait_until(lambda: broker.llen("gpu") == 0, timeout=60, message="the probe to be consumed")
    log_text = text()
    assert log_text.index("warm-up finished") < log_text.index("ready.")
    assert "flux ready in" in log_text and "lossless: compile(default)" in log_text
