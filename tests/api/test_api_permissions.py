"""Who may call what: anonymous, no role, consumer, expert, admin × every endpoint."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.api.conftest import ROLES, ApiData

READ = ("consumer", "expert", "admin")


def endpoints(d: ApiData) -> list[tuple[str, str, set[str]]]:
    """(method, url, roles allowed)."""
    e = d.export.pk
    return [
        ("get", "/api/v1/characters/", set(READ)),
        ("get", f"/api/v1/characters/{d.locked.pk}/", set(READ)),
        ("get", "/api/v1/stories/", set(READ)),
        ("get", f"/api/v1/stories/{d.story.pk}/", set(READ)),
        ("get", "/api/v1/frames/", set(READ)),
        ("get", f"/api/v1/frames/{d.frame.pk}/", set(READ)),
        ("get", "/api/v1/exports/", set(READ)),
        ("get", f"/api/v1/exports/{e}/", set(READ)),
        ("get", f"/api/v1/exports/{e}/manifest/", set(READ)),
        ("get", f"/api/v1/exports/{e}/files/?path=index.parquet", set(READ)),
        ("post", "/api/v1/exports/", {"admin"}),
    ]


@pytest.mark.parametrize("role", ROLES)
def test_permissions_matrix(role: str, api_data: ApiData, client_for: Any) -> None:
    client = client_for(role)
    for method, url, allowed in endpoints(api_data):
        body = {"formats": ["parquet"]} if method == "post" else None
        response = getattr(client, method)(url, body, format="json")
        if role in allowed:
            assert response.status_code in (200, 202), (role, url, response.status_code)
        elif role == "anonymous":
            assert response.status_code in (401, 403), (role, url, response.status_code)
        else:
            assert response.status_code == 403, (role, url, response.status_code)


def test_token_auth(api_data: ApiData, client_for: Any) -> None:
    response = client_for("consumer", token=True).get("/api/v1/frames/")
    assert response.status_code == 200
    assert [r["id"] for r in response.json()["results"]] == [api_data.frame.pk]


def test_consumers_see_only_approved_data(api_data: ApiData, client_for: Any) -> None:
    consumer, expert = client_for("consumer"), client_for("expert")
    ids = lambda c, url: {r["id"] for r in c.get(url).json()["results"]}  # noqa: E731
    assert api_data.rejected.pk not in ids(consumer, "/api/v1/characters/")
    assert api_data.rejected.pk in ids(expert, "/api/v1/characters/")
    assert ids(consumer, "/api/v1/stories/") == {api_data.story.pk}
    assert api_data.hidden_story.pk in ids(expert, "/api/v1/stories/")
    assert ids(consumer, "/api/v1/frames/") == {api_data.frame.pk}
    assert {f.pk for f in api_data.hidden_frames} <= ids(expert, "/api/v1/frames/")
    for frame in api_data.hidden_frames:
        assert consumer.get(f"/api/v1/frames/{frame.pk}/").status_code == 404
    assert consumer.get(f"/api/v1/characters/{api_data.rejected.pk}/").status_code == 404


def test_rows_carry_absolute_image_urls_not_bytes(api_data: ApiData, client_for: Any) -> None:
    client = client_for("consumer")
    frame = client.get("/api/v1/frames/").json()["results"][0]
    assert frame["image_url"].startswith("http://testserver/media/frames/")
    assert frame["characters"][0].keys() == {"cid", "slot", "pid", "eid", "ctag"}
    assert frame["split"] == "train"
    character = client.get(f"/api/v1/characters/{api_data.locked.pk}/").json()
    assert character["template_url"].startswith("http://testserver/media/templates/")
    # The stored image's URL, signed (hilapp.media).
    assert urlsplit(frame["image_url"]).path.endswith(api_data.frame.image)
    assert "sig=" in urlsplit(frame["image_url"]).query
    assert not any(
        isinstance(v, bytes) or (isinstance(v, str) and len(v) > 2000) for v in frame.values()
    )


def test_admin_starts_an_export_and_follows_it(
    api_data: ApiData, client_for: Any, django_capture_on_commit_callbacks: Any
) -> None:
    admin = client_for("admin")
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = admin.post("/api/v1/exports/", {"formats": ["parquet"]}, format="json")
    assert response.status_code == 202 and len(callbacks) == 1
    job = response.json()
    assert job["status"] == "queued" and job["manifest_url"] is None
    bad = admin.post("/api/v1/exports/", {"formats": ["zip"]}, format="json")
    assert bad.status_code == 400
    bad = admin.post("/api/v1/exports/", {"holdout_stories": 3}, format="json")
    assert bad.status_code == 400 and "held-out characters" in str(bad.json())
    done = admin.get(f"/api/v1/exports/{api_data.export.pk}/").json()
    assert done["status"] == "done" and done["progress"] == 1.0
    manifest = admin.get(done["manifest_url"])
    body = b"".join(manifest.streaming_content)
    assert b'"hilapp-dataset"' in body
    assert admin.get(f"/api/v1/exports/{job['id']}/manifest/").status_code == 404  # not done
    escape = admin.get(f"/api/v1/exports/{api_data.export.pk}/files/?path=../../../../etc/passwd")
    assert escape.status_code == 404


def test_frame_filters(api_data: ApiData, client_for: Any) -> None:
    expert = client_for("expert")

    def ids(**params: Any) -> set[int]:
        response = expert.get("/api/v1/frames/", params)
        assert response.status_code == 200, response.content
        return {r["id"] for r in response.json()["results"]}

    frame = api_data.frame
    first = frame.cast.order_by("slot").first()
    assert frame.pk in ids(story=api_data.story.pk)
    assert ids(story=api_data.hidden_story.pk) == {api_data.hidden_frames[-1].pk}
    assert ids(character=api_data.rejected.cid) == {api_data.hidden_frames[2].pk}
    assert frame.pk in ids(pose=first.pid, expression=first.eid, composition=first.ctag)
    assert ids(split="train") == {f.pk for f in api_data.story.frames.all()}
    assert ids(split="heldout") == set()
    assert ids(updated_since="2999-01-01T00:00:00Z") == set()
    assert frame.pk in ids(updated_since="2000-01-01T00:00:00Z")
