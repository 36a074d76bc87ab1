"""Consumers only ever get media URLs of approved artifacts, and every one of them is signed."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

from synthesis.models import Character, Frame
from synthesis.states import CharacterStatus
from tests.api.conftest import ApiData, api_data, client_for  # noqa: F401 - fixtures


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def _crawl(client: Any) -> list[str]:
    """Every media URL in every consumer-readable list and detail row of the API."""
    found: list[str] = []
    for listing in ("characters", "stories", "frames", "exports"):
        response = client.get(f"/api/v1/{listing}/", {"page_size": 500})
        assert response.status_code == 200, listing
        for row in response.json()["results"]:
            detail = client.get(f"/api/v1/{listing}/{row['id']}/").json()
            found += [s for s in _strings([row, detail]) if "/media/" in s]
    return found


def test_consumers_get_signed_urls_of_approved_artifacts_only(
    api_data: ApiData,  # noqa: F811 - fixture
    client_for: Any,  # noqa: F811 - fixture
) -> None:
    urls = _crawl(client_for("consumer"))
    names = {urlsplit(url).path.removeprefix("/media/") for url in urls}
    assert all("sig=" in urlsplit(url).query and "exp=" in urlsplit(url).query for url in urls)
    assert api_data.frame.image in names  # the approved frame's image is handed out
    approved = {api_data.frame.image} | set(
        Character.objects.filter(status=CharacterStatus.LOCKED).values_list("template", flat=True)
    )
    assert names <= approved
    hidden = {api_data.rejected.template} | {f.image for f in api_data.hidden_frames}
    assert not names & hidden
    # Experts and admins do see the hidden ones (the crawl would notice a leak).
    expert_names = {urlsplit(u).path.removeprefix("/media/") for u in _crawl(client_for("expert"))}
    assert hidden & expert_names
    assert Frame.objects.filter(image__in=names).count() == 1
