"""Hardening fixtures: clients with API tokens per role, and a clean slate of lockouts."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from rest_framework.test import APIClient

from hilapp.lockouts import lockouts_clear_all
from hilapp.tokens import token_issue


@pytest.fixture(autouse=True)
def no_lockouts() -> Iterator[None]:
    lockouts_clear_all()
    yield
    lockouts_clear_all()


@pytest.fixture
def api(make_user: Any) -> Any:
    """``api("admin")`` → an APIClient sending that role's token."""

    tokens: dict[str, str] = {}

    def make(role: str) -> APIClient:
        if role not in tokens:
            tokens[role] = token_issue(make_user(f"t-{role}", role))
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Token {tokens[role]}")
        return client

    return make


def nothing_created() -> bool:
    from synthesis.models import Batch, Character, ModelCall, Story

    return not (
        Batch.objects.exists()
        or Character.objects.exists()
        or Story.objects.exists()
        or ModelCall.objects.exists()
    )
