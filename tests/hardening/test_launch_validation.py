"""Launch parameters at every door: a bad value is a 400 (form error, CommandError) that names
the field, and nothing is created. The database refuses what the rules refuse, too."""

from __future__ import annotations

from decimal import Decimal
from io import StringIO
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.db import DataError, IntegrityError, transaction

from synthesis.models import Batch, ModelCall
from tests.hardening.conftest import nothing_created

pytestmark = pytest.mark.django_db

CHAR = {"kind": "characters", "count": 2}
BAD_LAUNCHES = [
    ({**CHAR, "count": 1.5}, "count"),
    ({**CHAR, "count": True}, "count"),
    ({**CHAR, "count": "1_0"}, "count"),
    ({**CHAR, "count": 100_001}, "count"),
    ({**CHAR, "seed": 2**64}, "seed"),
    ({**CHAR, "seed": -1}, "seed"),
    ({**CHAR, "budget_usd": "1e20"}, "budget_usd"),
    ({**CHAR, "budget_usd": "1e400"}, "budget_usd"),
    ({**CHAR, "budget_usd": "NaN"}, "budget_usd"),
    ({**CHAR, "budget_usd": "Infinity"}, "budget_usd"),
    ({**CHAR, "budget_usd": "0.00004"}, "budget_usd"),  # rounds to zero at 4 places
    ({**CHAR, "params": {"roles": {"judge": "sim:gpt-4o=nan"}}}, "params.roles.judge"),
    ({**CHAR, "params": {"roles": {"judge": "sim:gpt-4o=inf"}}}, "params.roles.judge"),
    ({**CHAR, "params": {"roles": {"judge": "openai:gpt-5"}}}, "params.roles.judge"),
    ({**CHAR, "params": {"roles": {"judge": 5}}}, "params.roles.judge"),
    ({**CHAR, "params": {"roles": ["judge"]}}, "params.roles"),
    ({**CHAR, "params": {"subject_categories": 5}}, "params.subject_categories"),
    ({**CHAR, "params": {"sim": {"faults": 0.5}}}, "params.sim.faults"),
    (
        {**CHAR, "params": {"sim": {"faults": {"low_viescore": "nan"}}}},
        "params.sim.faults.low_viescore",
    ),
    ({**CHAR, "params": {"sim": {"latency_ms": 3.2e10}}}, "params.sim.latency_ms"),
    ({**CHAR, "params": {"sim": {"latency_ms": -5}}}, "params.sim.latency_ms"),
    ({**CHAR, "params": {"sim": {"seed": 4}}}, "params.sim"),
    ({**CHAR, "params": {"blob": "x" * 100_000}}, "params"),
    ({**CHAR, "params": {"genres": ["mystery"]}}, "params"),  # a story parameter
    ({"kind": "stories", "count": 2, "params": {"genres": "x" * 65}}, "params.genres"),
    ({"kind": "stories", "count": 2, "params": {"max_frames": 10**30}}, "params.max_frames"),
]


@pytest.mark.parametrize(("payload", "field"), BAD_LAUNCHES)
def test_api_launch_refuses_and_names_the_field(
    api: Any, payload: dict[str, Any], field: str
) -> None:
    response = api("admin").post("/api/v1/batches/", payload, format="json")
    assert response.status_code == 400, response.content
    assert field in response.json(), response.json()
    assert nothing_created()


def test_api_launch_accepts_a_clean_one_and_stores_the_rounded_budget(api: Any) -> None:
    payload = {**CHAR, "count": "3", "budget_usd": "12.34567", "seed": "7"}
    payload["params"] = {"roles": {"judge": "sim:gpt-4o=2"}, "sim": {"latency_ms": 0}}
    response = api("admin").post("/api/v1/batches/", payload, format="json")
    assert response.status_code == 201, response.content
    batch = Batch.objects.get()
    assert (batch.requested, batch.seed, batch.budget_usd) == (3, 7, Decimal("12.3457"))
    assert batch.params["roles"] == {"judge": "sim:gpt-4o=2"}
    # The batch reads back everywhere: list, detail, admin.
    assert api("admin").get("/api/v1/batches/").status_code == 200
    assert api("admin").get(f"/api/v1/batches/{batch.pk}/").status_code == 200


def test_resume_refuses_a_budget_that_does_not_fit(api: Any) -> None:
    client = api("admin")
    batch_id = client.post("/api/v1/batches/", CHAR, format="json").json()["id"]
    assert client.post(f"/api/v1/batches/{batch_id}/pause/").status_code == 200
    response = client.post(
        f"/api/v1/batches/{batch_id}/resume/", {"budget_usd": "1e20"}, format="json"
    )
    assert response.status_code == 400 and "budget_usd" in response.json()
    assert Batch.objects.get().status == "paused" and Batch.objects.get().budget_usd is None


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"count": "1.5"}, "count must be a whole number"),
        ({"budget_usd": "1e20"}, "budget must be at most"),
        ({"sim_latency_ms": "-5"}, "latency_ms must be between 0 and 60000"),
        ({"roles": "judge=openai:gpt-5"}, "unknown model"),
    ],
)
def test_page_form_refuses_and_creates_nothing(
    make_user: Any, client: Any, fields: dict[str, str], message: str
) -> None:
    client.force_login(make_user("boss", "admin"))
    response = client.post("/synthesis/batches/", {"kind": "characters", "count": "2", **fields})
    assert response.status_code == 400
    assert message in response.content.decode()
    assert nothing_created()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--count", "1_0"], "count"),
        (["--count", "2", "--seed", str(2**64)], "seed"),
        (["--count", "2", "--params", '{"sim": {"latency_ms": 1e400}}'], "latency_ms"),
        (["--count", "2", "--params", "[" * 100_000], "--params"),
        (["--count", "2", "--budget-usd", "0.00001"], "rounds to zero"),
        (["--count", "2", "--params", '{"genres": ["a\\u0000b"]}'], "params"),
        (["--count", "2", "--params", '{"subject_categories": ["a\\u0000b"]}'], "NUL"),
    ],
)
def test_cli_refuses_and_creates_nothing(args: list[str], message: str) -> None:
    with pytest.raises(CommandError, match=message):
        call_command("launch_batch", "characters", *args, stdout=StringIO())
    assert nothing_created()


def test_database_refuses_a_budget_no_page_could_read() -> None:
    """The CHECK constraint (not only the cleaner): no code path can store a 1e20 budget."""
    with pytest.raises((IntegrityError, DataError)), transaction.atomic():
        Batch.objects.create(kind="characters", requested=1, budget_usd=Decimal("1e20"))
    with pytest.raises(IntegrityError), transaction.atomic():
        Batch.objects.create(kind="characters", requested=0)
    with pytest.raises(IntegrityError), transaction.atomic():
        ModelCall.objects.create(role="judge", provider="sim", model="gpt-4o", cost_usd=-1)
    assert nothing_created()
