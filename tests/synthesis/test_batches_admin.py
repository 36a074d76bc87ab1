"""Admins launch, follow and steer batches (page, API, services); experts get 403; bad
parameters create nothing; cancelling a running batch (real worker) loses nothing and starts
nothing new; the Django admin shows every synthesis model."""

from __future__ import annotations

import time
from typing import Any

import pytest
from django.apps import apps
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from synthesis.models import Batch, Character, ModelCall, StatusChange
from synthesis.services.batch_lifecycle import (
    BatchActionError,
    batch_cancel,
    batch_launch,
    batch_pause,
    batch_resume,
)
from synthesis.states import BatchStatus, CallStatus, CharacterStatus
from tests.conftest import wait_until

pytestmark = pytest.mark.django_db

FAST_SIM = {"sim": {"faults": {}, "latency_ms": 0}}


@pytest.fixture
def admin_client(make_user: Any) -> Client:
    client = Client()
    client.force_login(make_user("boss", role="admin"))
    return client


@pytest.fixture
def expert_client(make_user: Any) -> Client:
    client = Client()
    client.force_login(make_user("eve", role="expert"))
    return client


def _nothing_created() -> bool:
    return not Batch.objects.exists() and not Character.objects.exists()


# --- the page ----------------------------------------------------------------------------------


def test_admin_launches_a_character_batch_from_the_page(admin_client: Client) -> None:
    page = admin_client.get(reverse("synthesis:batches"))
    assert page.status_code == 200 and b"Launch a batch" in page.content
    response = admin_client.post(
        reverse("synthesis:batches"),
        {
            "kind": "characters",
            "count": "4",
            "seed": "7",
            "budget_usd": "2.5",
            "subject_categories": ["mammal"],
            "sim_faults": "low_viescore=0.5",
            "roles": "judge=sim:gpt-4o=1",
            "sim_latency_ms": "5",
        },
    )
    batch = Batch.objects.get()
    assert response.status_code == 302
    assert response["Location"] == reverse("synthesis:batch", args=[batch.pk])
    assert (batch.kind, batch.requested, batch.seed, str(batch.budget_usd)) == (
        "characters",
        4,
        7,
        "2.5000",
    )
    assert batch.params["subject_categories"] == ["mammal"]
    assert batch.params["sim"]["faults"]["low_viescore"] == 0.5
    assert batch.params["roles"] == {"judge": "sim:gpt-4o=1"}
    assert set(batch.characters.values_list("subject_category", flat=True)) == {"mammal"}
    detail = admin_client.get(response["Location"])
    assert detail.status_code == 200
    assert b"progress-fill" in detail.content and b"0 of 4" in detail.content


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"count": "0"}, "count must be between"),
        ({"count": "many"}, "count must be a whole number"),
        ({"budget_usd": "-3"}, "budget must be a positive number"),
        ({"sim_faults": "gremlins=0.5"}, "gremlins"),
        ({"sim_faults": "low_viescore=1.5"}, "low_viescore"),
        ({"roles": "juggler=sim:x=1"}, "unknown role"),
        ({"roles": "no equals sign"}, "role override line 1"),
        ({"subject_categories": ["dragons"]}, "dragons"),
        ({"seed": "x"}, "seed must be a whole number"),
        ({"sim_latency_ms": "slow"}, "latency_ms must be a number"),
    ],
)
def test_bad_parameters_show_an_error_and_create_nothing(
    admin_client: Client, fields: dict[str, Any], message: str
) -> None:
    data = {"kind": "characters", "count": "3", **fields}
    response = admin_client.post(reverse("synthesis:batches"), data)
    assert response.status_code == 400
    assert message in response.content.decode()
    assert _nothing_created()


def test_bad_story_parameters_create_nothing(admin_client: Client) -> None:
    response = admin_client.post(
        reverse("synthesis:batches"),
        {"kind": "stories", "count": "2", "min_frames": "9", "max_frames": "4"},
    )
    assert response.status_code == 400
    assert b"min_frames" in response.content
    assert not Batch.objects.exists()


@pytest.mark.parametrize("name", ["synthesis:batches", "synthesis:statistics"])
def test_expert_gets_403_on_admin_pages(expert_client: Client, name: str) -> None:
    assert expert_client.get(reverse(name)).status_code == 403
    assert expert_client.post(reverse("synthesis:batches"), {"count": "1"}).status_code == 403
    assert not Batch.objects.exists()


def test_anonymous_is_sent_to_login() -> None:
    response = Client().get(reverse("synthesis:batches"))
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]


def test_statistics_page_and_plots_render(admin_client: Client) -> None:
    page = admin_client.get(reverse("synthesis:statistics"))
    assert page.status_code == 200
    from synthesis.plots import PLOTS

    for name in PLOTS:
        assert reverse("synthesis:plot", args=[name]) in page.content.decode()
        png = admin_client.get(reverse("synthesis:plot", args=[name]))
        assert png.status_code == 200 and png["Content-Type"] == "image/png"
    assert admin_client.get("/synthesis/statistics/plots/nope.png").status_code == 404


def test_pause_resume_cancel_buttons(admin_client: Client) -> None:
    batch = batch_launch(kind="characters", count=3, params=FAST_SIM)
    url = reverse("synthesis:batch-action", args=[batch.pk, "pause"])
    assert admin_client.post(url).status_code == 302
    batch.refresh_from_db()
    assert batch.status == BatchStatus.PAUSED
    admin_client.post(reverse("synthesis:batch-action", args=[batch.pk, "resume"]))
    batch.refresh_from_db()
    assert batch.status == BatchStatus.RUNNING
    admin_client.post(reverse("synthesis:batch-action", args=[batch.pk, "cancel"]))
    batch.refresh_from_db()
    assert batch.status == BatchStatus.CANCELLED
    again = admin_client.post(
        reverse("synthesis:batch-action", args=[batch.pk, "resume"]), follow=True
    )
    assert b"cannot become running" in again.content


# --- the API ------------------------------------------------------------------------------------


def test_api_launch_list_detail_and_actions(admin_client: Client) -> None:
    created = admin_client.post(
        "/api/v1/batches/",
        {"kind": "characters", "count": 3, "seed": 5, "budget_usd": "1.5", "params": FAST_SIM},
        content_type="application/json",
    )
    assert created.status_code == 201, created.content
    body = created.json()
    assert body["kind"] == "characters" and body["total"] == 3 and body["percent"] == 0
    assert body["counts"] == {"drafting": 3} and body["budget_usd"] == 1.5
    listed = admin_client.get("/api/v1/batches/").json()
    assert [b["id"] for b in listed["results"]] == [body["id"]]
    detail = admin_client.get(f"/api/v1/batches/{body['id']}/").json()
    assert set(detail) >= {
        "counts",
        "percent",
        "throughput_per_min",
        "eta_s",
        "spend_usd",
        "failures",
        "actions",
    }
    assert admin_client.post(f"/api/v1/batches/{body['id']}/pause/").json()["status"] == "paused"
    assert admin_client.post(f"/api/v1/batches/{body['id']}/pause/").status_code == 409
    resumed = admin_client.post(
        f"/api/v1/batches/{body['id']}/resume/",
        {"budget_usd": "9"},
        content_type="application/json",
    )
    assert resumed.json()["status"] == "running" and resumed.json()["budget_usd"] == 9.0
    assert admin_client.post(f"/api/v1/batches/{body['id']}/cancel/").json()["status"] == (
        "cancelled"
    )


@pytest.mark.parametrize(
    "payload",
    [
        {"kind": "characters", "count": 0},
        {"kind": "characters", "count": 2, "budget_usd": "free"},
        {"kind": "characters", "count": 2, "params": {"sim": {"faults": {"gremlins": 1}}}},
        {"kind": "characters", "count": 2, "params": {"roles": {"judge": "nowhere"}}},
        {"kind": "characters", "count": 2, "params": {"profession_categories": ["pirates"]}},
        {"kind": "stories", "count": 2, "params": {"genres": "mystery"}},
        {"kind": "dragons", "count": 2},
    ],
)
def test_api_bad_parameters_400_and_nothing_created(
    admin_client: Client, payload: dict[str, Any]
) -> None:
    response = admin_client.post("/api/v1/batches/", payload, content_type="application/json")
    assert response.status_code == 400, response.content
    assert response.json()
    assert _nothing_created()


def test_api_is_admin_only(expert_client: Client) -> None:
    assert expert_client.get("/api/v1/batches/").status_code == 403
    response = expert_client.post(
        "/api/v1/batches/", {"kind": "characters", "count": 1}, content_type="application/json"
    )
    assert response.status_code == 403
    assert expert_client.get("/api/v1/statistics/").status_code == 403
    assert _nothing_created()


def test_api_statistics_every_figure(admin_client: Client) -> None:
    from synthesis.plots import PLOTS

    figures = admin_client.get("/api/v1/statistics/").json()
    assert set(PLOTS) <= set(figures)
    one = admin_client.get("/api/v1/statistics/kappa/").json()
    assert [k["stage"] for k in one["kappa"]] == ["hv1", "hv2", "hv3", "audit"]
    assert admin_client.get("/api/v1/statistics/nope/").status_code == 404


# --- services ----------------------------------------------------------------------------------


def test_resume_requeues_waiting_work(django_capture_on_commit_callbacks: Any) -> None:
    with django_capture_on_commit_callbacks() as launched:
        batch = batch_launch(kind="characters", count=3, params=FAST_SIM)
    assert len(launched) == 3
    batch_pause(batch_id=batch.pk, actor="tester")
    with pytest.raises(BatchActionError):
        batch_pause(batch_id=batch.pk, actor="tester")
    with django_capture_on_commit_callbacks() as resent:
        batch_resume(batch_id=batch.pk, actor="tester")
    assert len(resent) == 3  # every drafting character is sent again
    change = StatusChange.objects.filter(model="batch", object_id=batch.pk).last()
    assert change is not None and (change.old, change.new, change.actor) == (
        "paused",
        "running",
        "tester",
    )


def test_cancelling_a_paused_batch_cancels_its_waiting_units() -> None:
    batch = batch_launch(kind="characters", count=3, params=FAST_SIM)
    batch_pause(batch_id=batch.pk, actor="tester")
    batch_cancel(batch_id=batch.pk, actor="tester")
    assert set(batch.characters.values_list("status", flat=True)) == {CharacterStatus.CANCELLED}


def test_the_admin_lists_every_synthesis_model(admin_client: Client) -> None:
    batch_launch(kind="characters", count=2, params=FAST_SIM)
    for model in apps.get_app_config("synthesis").get_models():
        meta = model._meta
        url = reverse(f"admin:{meta.app_label}_{meta.model_name}_changelist")
        assert admin_client.get(url).status_code == 200, url
    character = Character.objects.first()
    assert character is not None
    url = reverse("admin:synthesis_character_change", args=[character.pk])
    assert admin_client.get(url).status_code == 200
    assert admin_client.get(reverse("admin:synthesis_batch_add")).status_code == 403


# --- cancel with a real worker ----------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_cancel_during_a_running_batch_loses_nothing_and_starts_nothing(
    celery_workers: Any,
) -> None:
    celery_workers.env["HILAPP_TEMPLATE_SIZE"] = "128"
    celery_workers.start(concurrency=2)
    count = 14
    batch = batch_launch(
        kind="characters", count=count, params={"sim": {"faults": {}, "latency_ms": 250}}
    )

    def some_started() -> bool:  # drafts go first (FIFO): cancel once a few are drafted
        return batch.characters.exclude(status=CharacterStatus.DRAFTING).count() >= 2

    wait_until(some_started, timeout=120, message=f"two drafted\n{celery_workers.logs()}")
    cancelled_at = timezone.now()
    in_flight_before = set(ModelCall.objects.filter(batch=batch).values_list("subject", flat=True))
    batch_cancel(batch_id=batch.pk, actor="tester")

    resting = {
        CharacterStatus.PENDING_HV1,
        CharacterStatus.DISCARDED,
        CharacterStatus.FAILED,
        CharacterStatus.CANCELLED,
    }

    def all_resting() -> bool:
        statuses = set(batch.characters.values_list("status", flat=True))
        calls_open = ModelCall.objects.filter(batch=batch, status=CallStatus.STARTED).exists()
        return statuses <= resting and not calls_open

    wait_until(all_resting, timeout=120, message=f"every unit at rest\n{celery_workers.logs()}")
    calls = ModelCall.objects.filter(batch=batch).count()
    time.sleep(3)
    assert ModelCall.objects.filter(batch=batch).count() == calls, "a call started after rest"

    characters = list(batch.characters.all())
    cancelled = [c for c in characters if c.status == CharacterStatus.CANCELLED]
    finished = [c for c in characters if c.status != CharacterStatus.CANCELLED]
    assert cancelled, "the cancel came too late to cancel anything"
    # Nothing lost: a cancelled character never called a model; every started one finished
    # properly (reviewable with its template, or discarded/failed with a reason).
    called = set(ModelCall.objects.filter(batch=batch).values_list("subject", flat=True))
    assert not {f"character:{c.pk}" for c in cancelled} & called
    for c in finished:
        assert c.template and (c.status == CharacterStatus.PENDING_HV1 or c.reason), c
    assert all(
        ModelCall.objects.filter(batch=batch)
        .exclude(status=CallStatus.STARTED)
        .values_list("finished_at", flat=True)
    )
    # Nothing new started: units that first called a model after the cancel are at most the
    # ones the two worker processes had already picked up when it came.
    new_after = (
        set(
            ModelCall.objects.filter(batch=batch, started_at__gt=cancelled_at).values_list(
                "subject", flat=True
            )
        )
        - in_flight_before
    )
    assert len(new_after) <= 2, new_after
    batch.refresh_from_db()
    assert batch.status == BatchStatus.CANCELLED
