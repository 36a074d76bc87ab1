"""The ensemble's distribution, the circuit breaker in routing, rate limits, pauses and budgets."""

from __future__ import annotations

import time
from collections import Counter
from decimal import Decimal
from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured

from synthesis.models import Batch, ModelCall
from synthesis.prompts import RenderedPrompt
from synthesis.providers import calls, limits
from synthesis.providers.base import ErrorKind, ProviderError, Role, TextRequest
from synthesis.providers.routing import RouteEntry, choose
from synthesis.schemas import ScoreAnswer
from synthesis.states import BatchStatus
from tests.providers.fakes import FakeAPI
from tests.providers.test_openai import GOOD, chat

MIX = {"judge": "openai:gpt-4o=1,gemini:gemini-2.5-pro=1"}
GPT = RouteEntry("openai", "gpt-4o")
GEMINI = RouteEntry("gemini", "gemini-2.5-pro")


def picks(seed: int, n: int = 2000, **kwargs: Any) -> list[str]:
    return [
        choose(Role.JUDGE, seed=seed, key=f"frame:{i}", overrides=MIX, **kwargs).label
        for i in range(n)
    ]


def test_ensemble_is_equal_chance_and_seeded() -> None:
    first = picks(seed=11)
    counts = Counter(first)
    assert set(counts) == {GPT.label, GEMINI.label}
    assert abs(counts[GPT.label] / len(first) - 0.5) < 0.04  # ±4 points on 2,000 draws
    assert picks(seed=11) == first  # same seed → same choices
    assert picks(seed=12) != first


def test_weights_are_honoured() -> None:
    overrides = {"judge": "openai:gpt-4o=3,gemini:gemini-2.5-pro=1"}
    labels = [
        choose(Role.JUDGE, seed=1, key=str(i), overrides=overrides).label for i in range(2000)
    ]
    assert abs(labels.count(GPT.label) / 2000 - 0.75) < 0.04


def server_error() -> ProviderError:
    return ProviderError("HTTP 503", kind=ErrorKind.SERVER)


def test_open_circuit_is_skipped_while_another_entry_exists(settings: Any) -> None:
    settings.HILAPP_CIRCUIT_FAILURES = 3
    settings.HILAPP_CIRCUIT_COOLDOWN_S = 0.3
    for _ in range(2):
        limits.report(GPT, error=server_error())
    assert limits.available(GPT)
    limits.report(GPT, error=server_error())
    assert not limits.available(GPT)
    assert set(picks(seed=3, n=200, available=limits.available)) == {GEMINI.label}

    for _ in range(3):
        limits.report(GEMINI, error=server_error())
    with pytest.raises(ProviderError) as caught:
        choose(Role.JUDGE, seed=3, key="x", overrides=MIX, available=limits.available)
    assert caught.value.kind == ErrorKind.UNAVAILABLE

    time.sleep(0.35)  # cool-down over: half-open
    assert limits.available(GPT)
    limits.report(GPT, error=server_error())  # one more failure opens it again
    assert not limits.available(GPT)
    limits.report(GEMINI, error=None)  # a success closes it
    assert limits.available(GEMINI)


def test_permanent_and_malformed_errors_do_not_open_the_circuit(settings: Any) -> None:
    settings.HILAPP_CIRCUIT_FAILURES = 1
    limits.report(GPT, error=ProviderError("no", kind=ErrorKind.CONTENT_POLICY))
    limits.report(GPT, error=ProviderError("bad json", kind=ErrorKind.MALFORMED))
    assert limits.available(GPT)


def test_rate_limit_parse() -> None:
    parsed = limits.parse_rate_limits("openai=500/800000, gemini=300")
    assert parsed == {
        "openai": limits.RateLimit(500, 800000),
        "gemini": limits.RateLimit(300, 0),
    }
    with pytest.raises(ImproperlyConfigured):
        limits.parse_rate_limits("openai=lots")


# The Redis variants are marked `redis`: conftest deselects them where no Redis answers.
SHARED = [
    pytest.param(False, id="process-local"),
    pytest.param(True, id="redis", marks=pytest.mark.redis),
]


@pytest.mark.parametrize("shared", SHARED)
def test_requests_and_tokens_per_minute(settings: Any, shared: bool) -> None:
    if shared:
        redis_backend(settings)
    backend = limits.backend()
    per_min = limits.RateLimit(requests_per_min=2, tokens_per_min=1000)
    assert backend.take("openai", per_min, 100) == 0
    assert backend.take("openai", per_min, 100) == 0
    wait = backend.take("openai", per_min, 100)  # third request in the minute
    assert 55 < wait <= 60
    tokens_only = limits.RateLimit(requests_per_min=0, tokens_per_min=1000)
    assert backend.take("gemini", tokens_only, 900) == 0
    assert 55 < backend.take("gemini", tokens_only, 200) <= 60
    assert backend.take("gemini", tokens_only, 100) == 0


@pytest.mark.parametrize("shared", SHARED)
def test_retry_after_pauses_the_provider(settings: Any, shared: bool) -> None:
    if shared:
        redis_backend(settings)
    limits.report(GPT, error=ProviderError("429", kind=ErrorKind.RATE_LIMIT, retry_after=0.4))
    started = time.monotonic()
    limits.acquire(RouteEntry("openai", "gpt-image-1"), tokens=10)  # same provider, other model
    assert time.monotonic() - started >= 0.35
    started = time.monotonic()
    limits.acquire(GEMINI, tokens=10)  # another provider is not paused
    assert time.monotonic() - started < 0.1


@pytest.mark.parametrize("shared", SHARED)
def test_a_success_resets_the_failure_count_only_when_one_is_counted(
    settings: Any, shared: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    if shared:
        redis_backend(settings)
    monkeypatch.setattr(limits, "CLOSED_CACHE_S", 0.05)
    backend = limits.backend()
    other_worker = limits.RedisBackend(settings.HILAPP_REDIS_URL) if shared else backend
    resets: list[str] = []
    reset_for_real = backend.success
    monkeypatch.setattr(
        backend, "success", lambda label: [resets.append(label), reset_for_real(label)]
    )

    assert limits.available(GPT)
    for _ in range(5):
        limits.report(GPT, error=None)
    assert resets == []  # no failure counted: nothing to reset, no round trip
    limits.report(GPT, error=server_error())  # this worker's own failure is reset at once
    limits.report(GPT, error=None)
    assert resets == [GPT.label]

    other_worker.failure(GPT.label, threshold=3, cooldown_s=5)
    time.sleep(0.06)  # the cached answer is stale: the next check sees the count
    assert limits.available(GPT)
    limits.report(GPT, error=None)
    assert resets == [GPT.label, GPT.label]
    # The count was reset: two more failures do not reach the threshold of three.
    assert not other_worker.failure(GPT.label, threshold=3, cooldown_s=5)
    assert not other_worker.failure(GPT.label, threshold=3, cooldown_s=5)


def redis_backend(settings: Any) -> None:
    settings.HILAPP_REDIS_URL = "redis://127.0.0.1:6379/5"
    limits.reset()
    assert isinstance(limits.backend(), limits.RedisBackend)


@pytest.mark.redis
def test_redis_state_is_shared_between_workers(settings: Any) -> None:
    redis_backend(settings)
    settings.HILAPP_CIRCUIT_FAILURES = 2
    worker_a = limits.RedisBackend(settings.HILAPP_REDIS_URL)
    worker_b = limits.RedisBackend(settings.HILAPP_REDIS_URL)
    worker_a.failure(GPT.label, threshold=2, cooldown_s=5)
    worker_b.failure(GPT.label, threshold=2, cooldown_s=5)  # two workers, one count
    assert worker_a.circuit(GPT.label)[0] and worker_b.circuit(GPT.label)[0]
    worker_a.pause("gemini", 2.0)
    assert 1.5 < worker_b.take("gemini", None, 0) <= 2.0


# --- budget -------------------------------------------------------------------------------------


@pytest.fixture
def openai_api(fake_api: FakeAPI, settings: Any) -> FakeAPI:
    settings.OPENAI_API_KEY = "sk-test"
    settings.OPENAI_BASE_URL = fake_api.url + "/v1"
    return fake_api


def test_budget_stops_the_batch_before_it_overspends(openai_api: FakeAPI, db: Any) -> None:
    prompt = RenderedPrompt(name="judge", version="v", text="Score it.")
    request = TextRequest(role=Role.JUDGE, prompt=prompt, schema=ScoreAnswer)
    # The estimate reserved per gpt-4o call is ~USD 0.0225; a real call here costs ~0.0038.
    batch = Batch.objects.create(kind="characters", requested=1, budget_usd=Decimal("0.025"))
    ctx = calls.CallContext.for_batch(batch, subject="character:1")
    openai_api.queue(chat(GOOD), chat(GOOD))

    calls.call_text(request, ctx, entry=GPT)
    with pytest.raises(calls.BudgetExceeded) as caught:
        calls.call_text(request, ctx, entry=GPT)

    assert caught.value.kind == ErrorKind.BUDGET and caught.value.permanent
    assert "budget reached" in str(caught.value)
    assert len(openai_api.seen) == 1  # the second request was never sent
    assert ModelCall.objects.filter(batch=batch).count() == 1
    batch.refresh_from_db()
    assert batch.status == BatchStatus.PAUSED and "budget reached" in batch.note
