"""Per-provider rate limits, Retry-After pauses and a circuit breaker per route entry.

- **Rate limits**: requests and tokens per minute per provider (``HILAPP_RATE_LIMITS``, e.g.
  ``openai=500/800000,gemini=300/1000000``; ``0`` means no limit on that axis), over a sliding
  60-second window. ``acquire`` blocks the calling thread until the request fits.
- **Pauses**: a 429 with ``Retry-After`` (or reset headers) pauses that provider for every
  worker until then; ``acquire`` waits out the pause.
- **Circuit breaker**: after ``HILAPP_CIRCUIT_FAILURES`` consecutive transient failures of one
  ``provider:model`` it is unavailable for ``HILAPP_CIRCUIT_COOLDOWN_S``; ``routing.choose``
  skips it while another entry of the role is available. After the cool-down the entry is
  half-open: one more transient failure opens it again, one success closes it.

With ``settings.HILAPP_REDIS_URL`` the state lives in Redis (atomic Lua scripts on the
server's clock), shared by all workers on all machines; otherwise it is process-local. If Redis
cannot be reached the limiter falls back to process-local state and logs it, rather than
failing the call.
"""

from __future__ import annotations

import logging
import random
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass
from functools import cache
from typing import Any, Protocol

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from synthesis.providers.base import ErrorKind, ProviderError
from synthesis.providers.routing import RouteEntry

log = logging.getLogger(__name__)

WINDOW_S = 60.0
# Transient kinds that say the provider (not the request) is in trouble.
CIRCUIT_KINDS = frozenset(
    {ErrorKind.SERVER, ErrorKind.TIMEOUT, ErrorKind.CONNECTION, ErrorKind.UNAVAILABLE}
)
# A Retry-After longer than this is treated as this long (a misbehaving header must not park
# every worker for hours).
MAX_PAUSE_S = 600.0
KEY_PREFIX = "hilapp:limits:"
# Threads released by the end of a pause (or a window slot) wake up spread over up to this
# share of their wait (at most PAUSE_JITTER_MAX_S), so they do not all fire together and draw
# the next 429s at once.
PAUSE_JITTER_SHARE = 0.25
PAUSE_JITTER_MAX_S = 2.0
# How long a worker trusts its last "circuit closed" answer (seconds), and with it whether any
# failure was counted. Asking the shared backend on every call is a Redis round trip per route
# entry per call; an open circuit is never cached, and this worker's own failures forget the
# cached answer at once. A success resets the failure count only when one was seen (its
# DELETE would be a second round trip per call), so another worker's failure counted within
# the last CLOSED_CACHE_S may outlive a success here.
CLOSED_CACHE_S = 0.5


@dataclass(frozen=True)
class RateLimit:
    requests_per_min: int
    tokens_per_min: int


def parse_rate_limits(spec: str) -> dict[str, RateLimit]:
    """``"openai=500/800000,gemini=300"`` → {provider: RateLimit}; raises on a bad item."""
    limits: dict[str, RateLimit] = {}
    for item in filter(None, (part.strip() for part in spec.split(","))):
        provider, sep, numbers = item.partition("=")
        rpm_text, _, tpm_text = numbers.partition("/")
        try:
            rpm = int(rpm_text) if rpm_text.strip() else 0
            tpm = int(tpm_text) if tpm_text.strip() else 0
        except ValueError:
            rpm = tpm = -1
        if not sep or not provider.strip() or rpm < 0 or tpm < 0:
            raise ImproperlyConfigured(
                f"HILAPP_RATE_LIMITS item {item!r}: "
                "expected provider=requests_per_min[/tokens_per_min]"
            )
        limits[provider.strip()] = RateLimit(rpm, tpm)
    return limits


@cache
def _rate_limits(spec: str) -> dict[str, RateLimit]:
    return parse_rate_limits(spec)


def rate_limit_for(provider: str) -> RateLimit | None:
    return _rate_limits(getattr(settings, "HILAPP_RATE_LIMITS", "") or "").get(provider)


class Backend(Protocol):
    def take(self, provider: str, limit: RateLimit | None, tokens: int) -> float:
        """Record the request and return 0, or return the seconds to wait before trying again."""

    def pause(self, provider: str, seconds: float) -> None: ...

    def failure(self, label: str, *, threshold: int, cooldown_s: float) -> bool:
        """Count a transient failure; True when this one opened the circuit."""

    def success(self, label: str) -> None: ...

    def circuit(self, label: str) -> tuple[bool, bool]:
        """(open, failures counted) for the entry."""

    def reset(self) -> None: ...


class LocalBackend:
    """Process-local state (threads of one worker share it)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._window: dict[str, deque[tuple[float, int]]] = {}
        self._paused_until: dict[str, float] = {}
        self._fails: dict[str, int] = {}
        self._open_until: dict[str, float] = {}

    def take(self, provider: str, limit: RateLimit | None, tokens: int) -> float:
        with self._lock:
            now = time.monotonic()
            wait = self._paused_until.get(provider, 0.0) - now
            if limit is None:
                return max(0.0, wait)
            window = self._window.setdefault(provider, deque())
            while window and window[0][0] <= now - WINDOW_S:
                window.popleft()
            wait = max(wait, _window_wait(list(window), now, limit, tokens))
            if wait <= 0:
                window.append((now, tokens))
                return 0.0
            return wait

    def pause(self, provider: str, seconds: float) -> None:
        with self._lock:
            until = time.monotonic() + seconds
            self._paused_until[provider] = max(self._paused_until.get(provider, 0.0), until)

    def failure(self, label: str, *, threshold: int, cooldown_s: float) -> bool:
        with self._lock:
            count = self._fails.get(label, 0) + 1
            if count >= threshold:
                self._open_until[label] = time.monotonic() + cooldown_s
                self._fails[label] = threshold - 1  # half-open after the cool-down
                return True
            self._fails[label] = count
            return False

    def success(self, label: str) -> None:
        with self._lock:
            self._fails.pop(label, None)
            self._open_until.pop(label, None)

    def circuit(self, label: str) -> tuple[bool, bool]:
        with self._lock:
            return self._open_until.get(label, 0.0) > time.monotonic(), label in self._fails

    def reset(self) -> None:
        with self._lock:
            self._window.clear()
            self._paused_until.clear()
            self._fails.clear()
            self._open_until.clear()


def _window_wait(
    window: list[tuple[float, int]], now: float, limit: RateLimit, tokens: int
) -> float:
    """Seconds until a request of ``tokens`` fits into the sliding window (0: it fits now)."""
    wait = 0.0
    if limit.requests_per_min and len(window) >= limit.requests_per_min:
        oldest = window[len(window) - limit.requests_per_min][0]
        wait = oldest + WINDOW_S - now
    used = sum(t for _, t in window)
    if limit.tokens_per_min and window and used + tokens > limit.tokens_per_min:
        freed = 0
        for at, spent in window:
            freed += spent
            if used - freed + tokens <= limit.tokens_per_min:
                wait = max(wait, at + WINDOW_S - now)
                break
        else:
            wait = max(wait, window[-1][0] + WINDOW_S - now)
    return wait


# KEYS[1]: window zset (member "<id>:<tokens>", score ms), KEYS[2]: pause key (until, ms)
# ARGV: rpm, tpm, tokens, id. Returns the milliseconds to wait (0: taken).
_TAKE_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local window = 60000
local rpm, tpm, tokens = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local wait = 0
local paused = tonumber(redis.call('GET', KEYS[2]) or '0')
if paused > now then wait = paused - now end
if rpm < 0 then return wait end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
local entries = redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')
local count = #entries / 2
if rpm > 0 and count >= rpm then
  local oldest = tonumber(entries[(count - rpm) * 2 + 2])
  wait = math.max(wait, oldest + window - now)
end
if tpm > 0 and count > 0 then
  local used = 0
  for i = 1, #entries, 2 do used = used + tonumber(string.match(entries[i], ':(%d+)$')) end
  if used + tokens > tpm then
    local freed, until_ms = 0, tonumber(entries[#entries]) + window
    for i = 1, #entries, 2 do
      freed = freed + tonumber(string.match(entries[i], ':(%d+)$'))
      if used - freed + tokens <= tpm then until_ms = tonumber(entries[i + 1]) + window; break end
    end
    wait = math.max(wait, until_ms - now)
  end
end
if wait <= 0 then
  redis.call('ZADD', KEYS[1], now, ARGV[4] .. ':' .. ARGV[3])
  redis.call('PEXPIRE', KEYS[1], window + 1000)
  return 0
end
return wait
"""

# KEYS[1]: pause key. ARGV[1]: milliseconds. Extends, never shortens, a pause.
_PAUSE_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local untl = now + tonumber(ARGV[1])
local cur = tonumber(redis.call('GET', KEYS[1]) or '0')
if untl > cur then redis.call('SET', KEYS[1], untl, 'PX', tonumber(ARGV[1]) + 1000) end
return 1
"""

# KEYS[1]: failure counter, KEYS[2]: open flag. ARGV: threshold, cooldown ms. 1 when opened.
_FAIL_LUA = """
local n = redis.call('INCR', KEYS[1])
redis.call('PEXPIRE', KEYS[1], 86400000)
if n >= tonumber(ARGV[1]) then
  redis.call('SET', KEYS[2], '1', 'PX', tonumber(ARGV[2]))
  redis.call('SET', KEYS[1], tonumber(ARGV[1]) - 1, 'PX', 86400000)
  return 1
end
return 0
"""


class RedisBackend:
    """State shared by every worker through one Redis; scripts run atomically on the server."""

    def __init__(self, url: str) -> None:
        import redis

        self.client: Any = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)
        self._take = self.client.register_script(_TAKE_LUA)
        self._pause = self.client.register_script(_PAUSE_LUA)
        self._fail = self.client.register_script(_FAIL_LUA)

    def take(self, provider: str, limit: RateLimit | None, tokens: int) -> float:
        rpm, tpm = (limit.requests_per_min, limit.tokens_per_min) if limit else (-1, 0)
        keys = [f"{KEY_PREFIX}window:{provider}", f"{KEY_PREFIX}pause:{provider}"]
        waited = self._take(keys=keys, args=[rpm, tpm, max(0, tokens), uuid.uuid4().hex])
        return int(waited) / 1000.0

    def pause(self, provider: str, seconds: float) -> None:
        self._pause(keys=[f"{KEY_PREFIX}pause:{provider}"], args=[int(seconds * 1000)])

    def failure(self, label: str, *, threshold: int, cooldown_s: float) -> bool:
        keys = [f"{KEY_PREFIX}fails:{label}", f"{KEY_PREFIX}open:{label}"]
        return bool(self._fail(keys=keys, args=[threshold, max(1, int(cooldown_s * 1000))]))

    def success(self, label: str) -> None:
        self.client.delete(f"{KEY_PREFIX}fails:{label}", f"{KEY_PREFIX}open:{label}")

    def circuit(self, label: str) -> tuple[bool, bool]:
        fails, is_open = self.client.mget(f"{KEY_PREFIX}fails:{label}", f"{KEY_PREFIX}open:{label}")
        return is_open is not None, fails is not None

    def reset(self) -> None:
        keys = list(self.client.scan_iter(match=f"{KEY_PREFIX}*", count=500))
        if keys:
            self.client.delete(*keys)


_local = LocalBackend()
_redis_backends: dict[str, RedisBackend] = {}
_backends_lock = threading.Lock()


def backend() -> Backend:
    url = getattr(settings, "HILAPP_REDIS_URL", None)
    if not url:
        return _local
    with _backends_lock:
        if url not in _redis_backends:
            _redis_backends[url] = RedisBackend(url)
        return _redis_backends[url]


def _call(method: str, *args: Any, **kwargs: Any) -> Any:
    """Run a backend operation; if Redis is unreachable, use the process-local state."""
    chosen = backend()
    try:
        return getattr(chosen, method)(*args, **kwargs)
    except Exception as exc:
        if chosen is _local:
            raise
        import redis

        if not isinstance(exc, redis.RedisError):
            raise
        log.warning("rate limiter: Redis unavailable (%s); using process-local limits", exc)
        return getattr(_local, method)(*args, **kwargs)


# Until when (monotonic) this worker trusts that an entry's circuit is closed, and that no
# failure of it is counted.
_closed_until: dict[str, float] = {}
_no_failures_until: dict[str, float] = {}


def available(entry: RouteEntry) -> bool:
    """False while the entry's circuit is open (the provider keeps failing).

    Another worker's opening is seen within ``CLOSED_CACHE_S``; this worker's at once.
    """
    now = time.monotonic()
    if _closed_until.get(entry.label, 0.0) > now:
        return True
    is_open, failing = _call("circuit", entry.label)
    if is_open:
        _forget(entry.label)
        return False
    _closed_until[entry.label] = now + CLOSED_CACHE_S
    if failing:
        _no_failures_until.pop(entry.label, None)
    else:
        _no_failures_until[entry.label] = now + CLOSED_CACHE_S
    return True


def _forget(label: str) -> None:
    _closed_until.pop(label, None)
    _no_failures_until.pop(label, None)


def released_pause_s(wait: float) -> float:
    """How long to sleep for a wait of ``wait`` seconds: the wait plus a random spread."""
    return wait + random.uniform(0.0, min(wait * PAUSE_JITTER_SHARE, PAUSE_JITTER_MAX_S))


def acquire(entry: RouteEntry, *, tokens: int) -> None:
    """Block until a request of about ``tokens`` tokens may be sent to the entry's provider."""
    limit = rate_limit_for(entry.provider)
    while True:
        wait = float(_call("take", entry.provider, limit, tokens))
        if wait <= 0:
            return
        log.info("%s: waiting %.2fs for the rate limit / pause", entry.provider, wait)
        time.sleep(released_pause_s(min(wait, MAX_PAUSE_S)) + 0.005)


def report(entry: RouteEntry, *, error: ProviderError | None) -> None:
    """Record the outcome of a call (feeds the circuit breaker and Retry-After pauses)."""
    if error is None:
        if _no_failures_until.get(entry.label, 0.0) <= time.monotonic():
            _call("success", entry.label)  # closes the circuit: a cached "closed" stays true
        return
    _forget(entry.label)
    if error.kind == ErrorKind.RATE_LIMIT and error.retry_after:
        _call("pause", entry.provider, min(error.retry_after, MAX_PAUSE_S))
    if error.kind in CIRCUIT_KINDS and not error.permanent:
        threshold = int(getattr(settings, "HILAPP_CIRCUIT_FAILURES", 5))
        cooldown = float(getattr(settings, "HILAPP_CIRCUIT_COOLDOWN_S", 60.0))
        if _call("failure", entry.label, threshold=threshold, cooldown_s=cooldown):
            log.warning(
                "%s: circuit open for %.0fs after %d consecutive failures (last: %s)",
                entry.label,
                cooldown,
                threshold,
                error,
            )


def reset() -> None:
    """Forget all limiter and circuit state (tests; an admin action after an outage)."""
    _closed_until.clear()
    _no_failures_until.clear()
    _local.reset()
    try:
        _call("reset")
    finally:
        _rate_limits.cache_clear()
