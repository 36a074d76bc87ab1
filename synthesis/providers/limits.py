"""Per-provider rate limits and circuit breaking.

Process-local placeholder interface; the cross-worker (Redis) implementation replaces it.
"""

from __future__ import annotations

from synthesis.providers.base import ProviderError
from synthesis.providers.routing import RouteEntry


def available(entry: RouteEntry) -> bool:
    """False while the entry's circuit is open (the provider keeps failing)."""
    return True


def acquire(entry: RouteEntry, *, tokens: int) -> None:
    """Block until a request of about ``tokens`` tokens may be sent to the entry's provider."""


def report(entry: RouteEntry, *, error: ProviderError | None) -> None:
    """Record the outcome of a call (feeds the circuit breaker and Retry-After pauses)."""
