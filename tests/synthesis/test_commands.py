"""The command-line tools: seed_demo, pipeline_status, launch_batch."""

from __future__ import annotations

import json
from io import StringIO
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command

from hilapp.roles import is_admin, is_consumer, is_expert
from synthesis.models import Batch


@pytest.mark.django_db
def test_seed_demo_is_idempotent_and_prints_credentials(settings: Any) -> None:
    settings.IS_EMBEDDED = True  # demo passwords are set in the embedded mode only
    out = StringIO()
    call_command("seed_demo", stdout=out)
    call_command("seed_demo", stdout=out)
    users = {u.username: u for u in get_user_model().objects.all()}
    assert set(users) == {"admin", "expert1", "expert2", "expert3", "consumer1"}
    assert is_admin(users["admin"]) and not is_expert(users["admin"])
    assert all(is_expert(users[f"expert{i}"]) for i in (1, 2, 3))
    assert is_consumer(users["consumer1"])
    assert users["expert2"].check_password("expert2-demo")
    assert "expert1    password expert1-demo" in out.getvalue()


@pytest.mark.django_db
def test_pipeline_status_json_has_every_kind() -> None:
    out = StringIO()
    call_command("pipeline_status", "--json", stdout=out)
    assert set(json.loads(out.getvalue())) >= {"characters", "stories", "frames", "review"}


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["characters", "--count", "0"], "between 1 and"),
        (["characters", "--count", "3", "--sim-faults", "typo=0.1"], "unknown fault kind"),
        (["characters", "--count", "3", "--params", "[1]"], "JSON object"),
        (["characters", "--count", "3", "--budget-usd", "free"], "number of US dollars"),
    ],
)
def test_launch_batch_refuses_bad_input_and_creates_nothing(args: list[str], message: str) -> None:
    with pytest.raises(CommandError, match=message):
        call_command("launch_batch", *args, stdout=StringIO())
    assert not Batch.objects.exists()


@pytest.mark.django_db
def test_launch_batch_reports_the_batch(django_capture_on_commit_callbacks: object) -> None:
    out = StringIO()
    call_command("launch_batch", "characters", "--count", "2", "--seed", "3", stdout=out)
    batch = Batch.objects.get()
    assert f"launched batch {batch.pk}: 2 characters" in out.getvalue()
    assert batch.characters.count() == 2
