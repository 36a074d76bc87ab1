"""The OpenAPI schema documents every endpoint of this API, and the docs page renders."""

from __future__ import annotations

from typing import Any


def test_schema_lists_the_endpoints(client_for: Any) -> None:
    response = client_for("consumer").get("/api/schema/", {"format": "json"})
    assert response.status_code == 200
    paths = response.json()["paths"]
    for path in (
        "/api/v1/characters/",
        "/api/v1/stories/",
        "/api/v1/frames/{id}/",
        "/api/v1/exports/",
        "/api/v1/exports/{id}/manifest/",
        "/api/v1/exports/{id}/files/",
    ):
        assert path in paths, path
    params = {p["name"] for p in paths["/api/v1/frames/"]["get"]["parameters"]}
    assert {
        "story",
        "character",
        "pose",
        "expression",
        "composition",
        "split",
        "updated_since",
        "cursor",
    } <= params


def test_docs_page(client_for: Any) -> None:
    assert client_for("consumer").get("/api/docs/").status_code == 200


def test_our_endpoints_validate_without_warnings() -> None:
    """What ``spectacular --validate --fail-on-warn`` checks, for this API's endpoints."""
    from django.urls import include, path
    from drf_spectacular.drainage import GENERATOR_STATS
    from drf_spectacular.generators import SchemaGenerator
    from drf_spectacular.validation import validate_schema

    from synthesis import api_urls
    from synthesis.api.exports import ExportViewSet
    from synthesis.api.views import CharacterViewSet, FrameViewSet, StoryViewSet

    ours = (CharacterViewSet, StoryViewSet, FrameViewSet, ExportViewSet)
    patterns = [p for p in api_urls.urlpatterns if getattr(p.callback, "cls", None) in ours]
    GENERATOR_STATS.reset()
    schema = SchemaGenerator(patterns=[path("api/v1/", include(patterns))]).get_schema(
        request=None, public=True
    )
    validate_schema(schema)
    assert not GENERATOR_STATS, (dict(GENERATOR_STATS._warn_cache), GENERATOR_STATS._error_cache)
