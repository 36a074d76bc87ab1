"""Cursor pagination: every row exactly once while rows are being added between pages."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.factories import CharacterFactory, StoryFactory, make_frame


def test_every_row_once_while_rows_are_added(
    db: Any, settings: Any, tmp_path: Path, client_for: Any
) -> None:
    settings.MEDIA_ROOT = tmp_path / "media"
    chars = CharacterFactory.create_batch(2)
    stories = [StoryFactory(cast_of=chars) for _ in range(3)]
    before = {make_frame(stories[i % 3], i, chars[: 1 + i % 2]).pk for i in range(60)}
    client = client_for("consumer")
    seen: list[int] = []
    url: str | None = "/api/v1/frames/?page_size=7"
    added = 60
    while url:
        body = client.get(url).json()
        seen += [row["id"] for row in body["results"]]
        url = body["next"]
        for _ in range(2):  # rows arrive while the client pages through
            make_frame(stories[added % 3], added, chars[:1])
            added += 1
        if added > 200:
            raise AssertionError("pagination does not end")
    assert len(seen) == len(set(seen))
    assert before <= set(seen)


def test_characters_and_stories_paginate_by_cursor(
    db: Any, settings: Any, tmp_path: Path, client_for: Any
) -> None:
    settings.MEDIA_ROOT = tmp_path / "media"
    made = {c.pk for c in CharacterFactory.create_batch(12)}
    client = client_for("expert")
    seen: list[int] = []
    url: str | None = "/api/v1/characters/?page_size=5"
    while url:
        body = client.get(url).json()
        assert "count" not in body  # a cursor page, not an offset page
        seen += [r["id"] for r in body["results"]]
        url = body["next"]
        CharacterFactory()
    assert len(seen) == len(set(seen)) and made <= set(seen)
