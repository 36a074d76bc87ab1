"""Each pipeline step runs on the queue of the provider its model call uses.

Three real workers, each listening on one queue only: the default queue (the simulator), ``api``
(OpenAI and Gemini, here the wire-format fakes) and ``gpu`` (diffusers, the tiny CPU Flux). The
ledger records which worker sent every request: no worker ever makes another queue's call, and
a template rendered on the GPU worker is judged by the API worker.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from synthesis.models import Character, ModelCall, StatusChange
from synthesis.providers.base import Role
from synthesis.providers.calls import CallContext, PlannedCall, queue_of
from synthesis.services.characters import batch_launch_characters
from synthesis.states import CharacterStatus
from tests.conftest import Workers, wait_until
from tests.model_fakes import ModelFakes

ROLES = {
    "planner": "openai:gpt-4o=1,sim:gpt-4o=1",
    "judge": "gemini:gemini-2.5-pro",
    "character_renderer": "diffusers:flux",
}
QUEUE_OF_PROVIDER = {"openai": "api", "gemini": "api", "diffusers": "gpu", "sim": "default"}


@pytest.fixture
def fakes() -> Iterator[ModelFakes]:
    server = ModelFakes().start()
    yield server
    server.close()


@pytest.fixture(scope="module")
def flux_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.providers.tiny_pipelines import build_tiny_flux

    return build_tiny_flux(tmp_path_factory.mktemp("flux"))


def test_queue_follows_the_routed_provider(settings: Any) -> None:
    ctx = CallContext(seed=3, role_overrides=dict(ROLES))
    settings.OPENAI_API_KEY = settings.GEMINI_API_KEY = "set"
    queues = {queue_of(PlannedCall(Role.PLANNER, f"character:{i}:concept", ctx)) for i in range(40)}
    assert queues == {"api", "celery"}  # the planner's two providers, each on its own queue
    assert queue_of(PlannedCall(Role.JUDGE, "x", ctx)) == "api"
    assert queue_of(PlannedCall(Role.CHARACTER_RENDERER, "x", ctx)) == "gpu"
    assert queue_of(None) == "celery"  # bookkeeping


@pytest.mark.worker
@pytest.mark.gpu
def test_a_worker_on_one_queue_only_makes_that_queues_calls(
    celery_workers: Workers, fakes: ModelFakes, flux_path: Path, settings: Any
) -> None:
    for name, value in {**fakes.env(), "DIFFUSERS_FLUX_PATH": str(flux_path)}.items():
        setattr(settings, name, value)
    celery_workers.env.update(
        fakes.env(),
        DIFFUSERS_FLUX_PATH=str(flux_path),
        DIFFUSERS_STEPS="2",
        HILAPP_TEMPLATE_SIZE="128",
    )
    celery_workers.start(queues="celery", name="default", concurrency=1)
    celery_workers.start(queues="api", name="api", pool="threads", concurrency=8)
    celery_workers.start(queues="gpu", name="gpu", pool="threads", concurrency=2)
    batch = batch_launch_characters(count=6, seed=5, params={"roles": ROLES})

    def settled() -> bool:
        return not batch.characters.filter(
            status__in=(CharacterStatus.DRAFTING, CharacterStatus.RENDERING)
        ).exists()

    try:
        wait_until(settled, timeout=240, message="6 characters to leave drafting and rendering")
    except AssertionError:
        print(celery_workers.logs())
        raise

    workers_by_provider: dict[str, set[str]] = defaultdict(set)
    for provider, worker in ModelCall.objects.filter(batch=batch).values_list("provider", "worker"):
        workers_by_provider[provider].add(worker.split("@")[0].rstrip("0123456789"))
    assert set(workers_by_provider) == {"openai", "sim", "gemini", "diffusers"}
    for provider, workers in workers_by_provider.items():
        assert workers == {QUEUE_OF_PROVIDER[provider]}, (provider, workers)
    statuses = set(Character.objects.filter(batch=batch).values_list("status", flat=True))
    reasons = list(
        StatusChange.objects.filter(new=CharacterStatus.FAILED).values_list("reason", flat=True)
    )
    assert statuses <= {CharacterStatus.PENDING_HV1, CharacterStatus.DISCARDED}, reasons
    assert fakes.stats()["answered"] == {
        provider: ModelCall.objects.filter(batch=batch, provider=provider, status="ok").count()
        for provider in ("openai", "gemini")
    }


@pytest.mark.worker
def test_the_batches_page_shows_queue_depths_and_warns_of_a_queue_nobody_consumes(
    celery_workers: Workers, client: Any, make_user: Any
) -> None:
    from hilapp.celery import app

    celery_workers.start(queues="celery", name="default", concurrency=1)
    client.force_login(make_user("boss", "admin"))
    # Work for the gpu queue, which no worker here consumes (a gpu host that is down).
    for _ in range(3):
        app.send_task("synthesis.tasks.story_check", args=[0], queue="gpu")

    def listed() -> bool:
        page = client.get("/synthesis/batches/").content.decode()
        return "default0@" in page

    wait_until(listed, timeout=60, message="the default worker to be listed on its queue")
    page = client.get("/synthesis/batches/").content.decode()
    assert 'data-queue="gpu">Queue <strong>gpu</strong> has 3 waiting messages' in page
    assert 'class="form-error queue-warning" data-queue="celery"' not in page
    assert 'class="form-error queue-warning" data-queue="api"' not in page
