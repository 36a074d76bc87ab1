"""Fixtures for the review tests: experts, an admin, a consumer, recorded decisions."""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.contrib.auth import get_user_model

from hilapp.roles import CONSUMERS, EXPERTS, add_to_role
from review import handlers
from review.handlers import Decision

# Playwright's sync API runs an event loop in the test thread; Django would refuse ORM calls.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

PASSWORD = "review-pass-123"
_names = itertools.count(1)


@pytest.fixture
def make_user(db: Any) -> Callable[..., Any]:
    def make(
        role: str | None = EXPERTS, *, username: str | None = None, staff: bool = False
    ) -> Any:
        user = get_user_model().objects.create_user(
            username=username or f"user{next(_names)}", password=PASSWORD, is_staff=staff
        )
        if role:
            add_to_role(user, role)
        return user

    return make


@pytest.fixture
def user_password() -> str:
    return PASSWORD


@pytest.fixture
def experts(make_user: Callable[..., Any]) -> list[Any]:
    return [make_user(EXPERTS, username=f"expert{i}-{next(_names)}") for i in range(5)]


@pytest.fixture
def admin_user(make_user: Callable[..., Any]) -> Any:
    return make_user(None, username=f"admin-{next(_names)}", staff=True)


@pytest.fixture
def consumer(make_user: Callable[..., Any]) -> Any:
    return make_user(CONSUMERS, username=f"consumer-{next(_names)}")


@pytest.fixture
def decisions() -> Iterator[list[Decision]]:
    """Replace every stage's decision handler with one that records the decisions."""
    recorded: list[Decision] = []
    saved = dict(handlers._decision_handlers)
    for stage in ("hv1", "hv2", "hv3", "audit"):
        handlers.register_decision_handler(stage, recorded.append)
    yield recorded
    handlers._decision_handlers.clear()
    handlers._decision_handlers.update(saved)
