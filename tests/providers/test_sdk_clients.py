"""SDK clients under an api worker's threads: one client per configuration, never closed under a
caller; whatever an SDK raises becomes a provider error with a kind (so it is retried)."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from synthesis.providers import gemini, openai
from synthesis.providers.base import ErrorKind, ProviderError
from synthesis.providers.sdk_clients import forget_clients


@pytest.mark.parametrize("module", [gemini, openai])
def test_threads_racing_for_a_first_client_share_one(module: Any) -> None:
    forget_clients()
    start = threading.Barrier(32)
    clients: list[Any] = []

    def first_call() -> None:
        start.wait()
        clients.append(module._client("key", "http://127.0.0.1:9", 5.0))

    threads = [threading.Thread(target=first_call) for _ in range(32)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(clients) == 32
    assert len({id(c) for c in clients}) == 1


@pytest.mark.parametrize("module", [gemini, openai])
def test_an_unexpected_sdk_exception_is_a_transient_provider_error(module: Any) -> None:
    with pytest.raises(ProviderError) as caught, module._mapped_errors():
        raise RuntimeError("Cannot send a request, as the client has been closed.")
    assert caught.value.kind == ErrorKind.CONNECTION
    assert not caught.value.permanent
    assert "client has been closed" in str(caught.value)
