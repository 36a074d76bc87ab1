"""The admins' Exports page: it starts the same export job as the API, refuses bad parameters
with the service's message and creates nothing, shows recent jobs and their result; experts get
403."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from synthesis.export.jobs import export_job_run
from synthesis.models import ExportJob
from synthesis.states import ExportStatus
from tests.export.conftest import Simulated

FIELDS = {
    "formats": ["webdataset", "parquet"],
    "holdout_characters": "4",
    "holdout_stories": "4",
    "shard_max_bytes": "40960",
    "seed": "3",
}


@pytest.fixture
def exports_dir(settings: Any, tmp_path: Path) -> Path:
    settings.HILAPP_EXPORT_DIR = str(tmp_path / "exports")
    return tmp_path / "exports"


@pytest.fixture
def admin_client(make_user: Any) -> Client:
    client = Client()
    client.force_login(make_user("boss", role="admin"))
    return client


def test_admin_starts_an_export_and_sees_its_result(
    simulated: Simulated,
    exports_dir: Path,
    admin_client: Client,
    django_capture_on_commit_callbacks: Any,
) -> None:
    page = admin_client.get(reverse("synthesis:exports"))
    assert page.status_code == 200
    assert b"No exports yet." in page.content
    with django_capture_on_commit_callbacks(execute=False) as queued:
        response = admin_client.post(reverse("synthesis:exports"), FIELDS)
    assert response.status_code == 302
    job = ExportJob.objects.get()
    assert len(queued) == 1  # the export task, sent after commit
    assert job.status == ExportStatus.QUEUED and job.created_by.username == "boss"
    assert job.params["formats"] == ["webdataset", "parquet"]
    assert (job.params["holdout_characters"], job.params["seed"]) == (4, 3)
    assert Path(job.out_dir).parent == exports_dir

    export_job_run(job_id=job.pk)  # what the worker does with the message
    page = admin_client.get(reverse("synthesis:exports"))
    manifest = reverse("export-manifest", args=[job.pk])
    assert f'href="{manifest}"'.encode() in page.content
    job.refresh_from_db()
    assert f"{job.done} frames".encode() in page.content and job.done > 0
    assert admin_client.get(manifest).status_code == 200


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"formats": []}, "Give at least one format"),
        ({"holdout_characters": "many"}, "holdout_characters must be an integer"),
        ({"shard_max_bytes": "100"}, "shard_max_bytes must be at least"),
        ({"holdout_characters": "0"}, "Held-out stories need held-out characters"),
    ],
)
def test_bad_parameters_show_the_reason_and_create_nothing(
    exports_dir: Path, admin_client: Client, change: dict[str, Any], message: str
) -> None:
    response = admin_client.post(reverse("synthesis:exports"), {**FIELDS, **change})
    assert response.status_code == 400
    assert message in response.content.decode()
    assert not ExportJob.objects.exists()


def test_experts_and_strangers_cannot_export(db: Any, make_user: Any, exports_dir: Path) -> None:
    expert = Client()
    expert.force_login(make_user("eve", role="expert"))
    assert expert.get(reverse("synthesis:exports")).status_code == 403
    assert expert.post(reverse("synthesis:exports"), FIELDS).status_code == 403
    anonymous = Client().post(reverse("synthesis:exports"), FIELDS)
    assert anonymous.status_code == 302 and "login" in anonymous["Location"]
    assert not ExportJob.objects.exists()
