"""What the viewsets share: cursor pagination by id, who sees everything, absolute image URLs."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rest_framework.pagination import CursorPagination
from rest_framework.request import Request

from hilapp.media import media_url
from hilapp.roles import AnyUser, is_admin, is_expert


class IdCursorPagination(CursorPagination):
    """Ascending ids: rows added while a client pages through appear after it, never twice."""

    ordering = "id"
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 500


def sees_everything(user: AnyUser) -> bool:
    """Admins and experts read every row; consumers read only approved data."""
    return is_admin(user) or is_expert(user)


def absolute_url(context: Mapping[str, Any], name: str) -> str | None:
    if not name:
        return None
    url = media_url(name)
    request: Request | None = context.get("request")
    return request.build_absolute_uri(url) if request is not None else url
