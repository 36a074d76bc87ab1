"""Throttling: failed logins and bad API tokens lock out for a while; API clients per role.

Built on Django's cache (Redis in production, so every web process sees the same counters; the
process-local memory cache in the embedded mode) and Django's own login signals, not on
django-axes. What is needed is two counters with a cool-off and a 429 that says when to come
back (``Retry-After``), for the login pages and for API tokens alike; axes would bring its own
tables and an authentication backend that needs the request in every ``authenticate()``
call, and cover only the password logins, so the token lockout would be ours anyway.

Lockouts are in ``hilapp.lockouts``:

- Login (the login page and the Django admin's): ``HILAPP_LOGIN_FAILURES`` wrong passwords for
  one account, or ``HILAPP_LOGIN_ADDRESS_FAILURES`` from one client address, within
  ``HILAPP_LOGIN_LOCKOUT_S`` lock that account / address out for ``HILAPP_LOGIN_LOCKOUT_S``:
  the next login POST gets 429 with ``Retry-After``, even with the right password.
- API tokens: ``HILAPP_TOKEN_FAILURES`` wrong tokens from one address lock it out the same way.
- API requests: ``RoleRateThrottle`` allows each role its ``HILAPP_THROTTLE_<ROLE>`` rate
  (DRF's ``N/second|minute|hour|day``); anonymous clients are counted per address.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from rest_framework.throttling import SimpleRateThrottle

from hilapp.lockouts import client_address

# --- API rates per role -------------------------------------------------------------------------


def role_of(user: Any) -> str:
    # Imported here, not above: DRF imports this module while it defines APIView (the class
    # body reads DEFAULT_THROTTLE_CLASSES), and hilapp.roles imports APIView.
    from hilapp import roles

    if not getattr(user, "is_authenticated", False):
        return "anon"
    if roles.is_admin(user):
        return "admin"
    if roles.is_expert(user):
        return "expert"
    if roles.is_consumer(user):
        return "consumer"
    return "user"


class RoleRateThrottle(SimpleRateThrottle):
    """One request history per user (per address when anonymous), at their role's rate from
    ``settings.HILAPP_THROTTLE_RATES`` (read per request, so tests and reloads see changes)."""

    scope = "role"

    def __init__(self) -> None:  # the rate depends on the request: chosen in allow_request
        self.rate: str | None = None
        self.num_requests: int | None = None
        self.duration: int | None = None

    def allow_request(self, request: Any, view: Any) -> bool:
        self.scope = role_of(request.user)
        rate = (settings.HILAPP_THROTTLE_RATES or {}).get(self.scope)
        if not rate:
            return True
        self.rate = rate
        self.num_requests, self.duration = self.parse_rate(rate)
        return super().allow_request(request, view)

    def get_cache_key(self, request: Any, view: Any) -> str:
        ident = request.user.pk if request.user.is_authenticated else client_address(request)
        return f"hilapp:throttle:{self.scope}:{ident}"
