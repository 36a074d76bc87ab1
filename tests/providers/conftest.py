"""Fixtures for the provider tests: a scripted local HTTP API, a clean limiter, a batch."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from synthesis.providers import limits, pricing, registry
from synthesis.states import BatchKind
from tests.providers.fakes import FakeAPI


@pytest.fixture
def fake_api() -> Iterator[FakeAPI]:
    api = FakeAPI()
    api.thread.start()
    yield api
    api.close()


@pytest.fixture(autouse=True)
def clean_provider_state(settings: Any) -> Iterator[None]:
    """Each test starts with closed circuits, no pauses and fresh cached clients/models."""
    settings.HILAPP_RETRY_BASE_S = 0.01
    settings.HILAPP_RETRY_MAX_S = 2.0
    limits.reset()
    registry._build.cache_clear()
    pricing.price_table.cache_clear()
    yield
    limits.reset()
    registry._build.cache_clear()


@pytest.fixture
def batch(db: Any) -> Any:
    from synthesis.models import Batch

    return Batch.objects.create(kind=BatchKind.values[0], requested=1, seed=7)
