"""API fixtures: a small dataset, one user per role, a finished export."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from rest_framework.test import APIClient

from hilapp.tokens import token_issue
from synthesis.export.jobs import export_job_start
from synthesis.models import Character, ExportJob, Frame, Story
from synthesis.states import AuditStatus, CharacterStatus, FrameStatus, StoryStatus
from synthesis.tasks import export_run
from tests.factories import CharacterFactory, StoryFactory, make_frame

ROLES = ("anonymous", "none", "consumer", "expert", "admin")


@dataclass
class ApiData:
    locked: Character
    rejected: Character
    story: Story
    hidden_story: Story
    frame: Frame
    hidden_frames: list[Frame]
    export: ExportJob


@pytest.fixture
def api_data(db: Any, settings: Any, tmp_path: Path) -> ApiData:
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.HILAPP_EXPORT_DIR = str(tmp_path / "exports")
    a, b = CharacterFactory.create_batch(2)
    rejected = CharacterFactory(status=CharacterStatus.REJECTED)
    story = StoryFactory(cast_of=[a, b], status=StoryStatus.COMPLETE)
    frame = make_frame(story, 0, [a, b])
    hidden = [
        make_frame(story, 1, [a], status=FrameStatus.DISCARDED, approval_path=""),
        make_frame(story, 2, [b], audit=AuditStatus.PENDING),
        make_frame(story, 3, [a, rejected]),
    ]
    hidden_story = StoryFactory(cast_of=[a], status=StoryStatus.PENDING_HV2)
    hidden.append(make_frame(hidden_story, 0, [a]))
    job = export_job_start(params={"formats": ["webdataset", "parquet"]})
    export_run(job.pk)
    job.refresh_from_db()
    return ApiData(a, rejected, story, hidden_story, frame, hidden, job)


@pytest.fixture
def client_for(make_user: Any) -> Any:
    def make(role: str, *, token: bool = False) -> APIClient:
        client = APIClient()
        if role == "anonymous":
            return client
        user = make_user(f"u-{role}", role)
        if token:
            client.credentials(HTTP_AUTHORIZATION=f"Token {token_issue(user)}")
        else:
            client.force_authenticate(user)
        return client

    return make
