"""One SDK client per configuration and process, safe to share between worker threads.

An api worker runs hundreds of calls at once in threads. Each SDK client owns an HTTP
connection pool; a client built twice by two threads racing to create it, and then dropped,
closes its pool under the caller that still uses it ("Cannot send a request, as the client has
been closed"). So clients are built once under a lock and kept for the life of the process,
with pools as large as the calls a worker keeps in flight (``PROVIDER_MAX_CONNECTIONS``).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from typing import Any, TypeVar

from django.conf import settings

try:  # the SDKs' own HTTP library (openai and google-genai moved to httpx2)
    import httpx2 as httpx
except ImportError:  # pragma: no cover
    import httpx  # type: ignore[no-redef]

C = TypeVar("C")

_clients: dict[Hashable, Any] = {}
_lock = threading.Lock()


def shared_client(key: Hashable, build: Callable[[], C]) -> C:
    """The process's client for ``key``, built once (never dropped while in use)."""
    client = _clients.get(key)
    if client is None:
        with _lock:
            client = _clients.get(key)
            if client is None:
                client = _clients[key] = build()
    return client


def forget_clients() -> None:
    """Drop every client (tests that change keys or base URLs between cases)."""
    with _lock:
        _clients.clear()


def connection_limits() -> Any:
    """A connection-pool limit for the SDKs' HTTP library (httpx2, or httpx before it)."""
    size = int(settings.PROVIDER_MAX_CONNECTIONS)
    return httpx.Limits(max_connections=size, max_keepalive_connections=size)
