"""Lockouts after failed logins and wrong API tokens, on Django's cache and login signals.

The counters live in Django's cache: Redis in production, so every web process sees the same
counts; the process-local memory cache in the embedded mode (one web process). ``Retry-After``
says when the lock ends. See ``hilapp.throttling`` for why this is not django-axes.
"""

from __future__ import annotations

import math
import time
from typing import Any

from django.conf import settings
from django.contrib.auth.signals import user_logged_in, user_login_failed
from django.core.cache import cache
from django.dispatch import receiver
from django.http import HttpRequest, HttpResponse
from django.urls import reverse


def client_address(request: Any) -> str:
    """The client's address: REMOTE_ADDR, or behind ``HILAPP_TRUSTED_PROXIES`` proxies the
    address the outermost of them saw (X-Forwarded-For, counted from the right: entries to the
    left of it are whatever the client chose to send)."""
    proxies = settings.HILAPP_TRUSTED_PROXIES
    forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "")
    if proxies and forwarded:
        hops = [hop.strip() for hop in forwarded.split(",") if hop.strip()]
        if hops:
            return hops[-min(proxies, len(hops))][:64]
    return str(request.META.get("REMOTE_ADDR") or "unknown")[:64]


# --- lockouts ---------------------------------------------------------------------------------


def _lock_key(scope: str, ident: str) -> str:
    return f"hilapp:lock:{scope}:{ident}"


def _fail_key(scope: str, ident: str) -> str:
    return f"hilapp:fail:{scope}:{ident}"


def lock_remaining(scope: str, ident: str) -> int:
    """Seconds until ``ident`` may try again (0: not locked)."""
    until = cache.get(_lock_key(scope, ident))
    if until is None:
        return 0
    return max(1, math.ceil(float(until) - time.time()))


def failure_record(scope: str, ident: str, *, limit: int, window_s: float) -> bool:
    """Count one failure; lock ``ident`` out for ``window_s`` once ``limit`` is reached.
    True if it is locked now."""
    key = _fail_key(scope, ident)
    timeout = max(1, math.ceil(window_s))
    cache.add(key, 0, timeout=timeout)
    try:
        failures = cache.incr(key)
    except ValueError:  # expired between add and incr
        cache.set(key, 1, timeout=timeout)
        failures = 1
    if failures >= limit:
        cache.set(_lock_key(scope, ident), time.time() + window_s, timeout=timeout)
        cache.delete(key)
        return True
    return False


def failures_clear(scope: str, ident: str) -> None:
    cache.delete_many([_fail_key(scope, ident), _lock_key(scope, ident)])


def too_many(wait_s: int, what: str) -> HttpResponse:
    response = HttpResponse(
        f"Too many {what}; try again in {wait_s} seconds.\n",
        status=429,
        content_type="text/plain; charset=utf-8",
    )
    response["Retry-After"] = str(wait_s)
    return response


# --- logins -----------------------------------------------------------------------------------


def _account(username: Any) -> str:
    return str(username or "").strip().lower()[:150]


@receiver(user_login_failed)
def _login_failed(sender: Any, credentials: dict[str, Any], request: Any = None, **kw: Any) -> None:
    window = settings.HILAPP_LOGIN_LOCKOUT_S
    account = _account(credentials.get("username"))
    if account:
        failure_record("login", account, limit=settings.HILAPP_LOGIN_FAILURES, window_s=window)
    if request is not None:
        failure_record(
            "login-address",
            client_address(request),
            limit=settings.HILAPP_LOGIN_ADDRESS_FAILURES,
            window_s=window,
        )


@receiver(user_logged_in)
def _logged_in(sender: Any, request: Any, user: Any, **kw: Any) -> None:
    failures_clear("login", _account(user.get_username()))


def login_paths() -> set[str]:
    return {reverse("login"), reverse("admin:login")}


def login_lockout(request: HttpRequest) -> HttpResponse | None:
    """429 for a login POST from a locked-out address or for a locked-out account."""
    if request.method != "POST" or request.path not in login_paths():
        return None
    wait = max(
        lock_remaining("login-address", client_address(request)),
        lock_remaining("login", _account(request.POST.get("username"))),
    )
    return too_many(wait, "failed logins") if wait else None


# --- API tokens -------------------------------------------------------------------------------


def token_lock_remaining(request: Any) -> int:
    return lock_remaining("token", client_address(request))


def token_failure_record(request: Any) -> None:
    failure_record(
        "token",
        client_address(request),
        limit=settings.HILAPP_TOKEN_FAILURES,
        window_s=settings.HILAPP_LOGIN_LOCKOUT_S,
    )


def lockouts_clear_all() -> None:
    """Forget every lockout and throttle count (tests; an operator unlocking everyone). On
    Redis only this app's keys are deleted: the broker may share the database."""
    location = settings.CACHES["default"].get("LOCATION")
    if "redis" not in settings.CACHES["default"]["BACKEND"].lower():
        cache.clear()
        return
    import redis

    client = redis.Redis.from_url(str(location))
    for key in client.scan_iter(match="*hilapp:*", count=1000):
        client.delete(key)
