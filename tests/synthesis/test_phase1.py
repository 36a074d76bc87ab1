"""Phase I through its services (tasks run eagerly here; the worker test runs real workers)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from hilapp.imaging import from_png
from review.models import ReviewItem
from synthesis.artifacts import read_bytes
from synthesis.models import Batch, Character, GateAttempt, ModelCall
from synthesis.services.characters import batch_launch_characters, character_apply_review
from synthesis.services.launch_params import LaunchError
from synthesis.states import AttemptStatus, BatchStatus, CallStatus, CharacterStatus
from tests.conftest import EAGER_IMAGE_SIZE


def launch(capture: Any, **kwargs: Any) -> Batch:
    with capture(execute=True):
        return batch_launch_characters(**kwargs)


def faults(**rates: float) -> dict[str, Any]:
    return {"sim": {"faults": rates}}


@pytest.mark.django_db
def test_characters_pass_to_hv1_or_are_discarded_with_their_reason(
    eager: None, django_capture_on_commit_callbacks: Any
) -> None:
    batch = launch(
        django_capture_on_commit_callbacks, count=30, seed=4, params=faults(low_viescore=0.4)
    )
    statuses = set(batch.characters.values_list("status", flat=True))
    assert statuses == {CharacterStatus.PENDING_HV1, CharacterStatus.DISCARDED}
    for character in batch.characters.all():
        attempt = GateAttempt.objects.get(character=character)
        if character.status == CharacterStatus.DISCARDED:
            assert character.viescore_overall < 7.0
            assert f"VIEScore {character.viescore_overall} < 7.0" in character.reason
            assert "low_quality" in character.reason  # the judge's reasoning is kept
            assert attempt.status == AttemptStatus.FAILED
        else:
            assert character.viescore_overall >= 7.0
            assert attempt.status == AttemptStatus.PASSED
            image = from_png(read_bytes(character.template))
            assert image.size == (EAGER_IMAGE_SIZE,) * 2 and image.getpixel((1, 1)) == (
                255,
                255,
                255,
            )
        assert character.name and character.visual_description and character.palette
        assert character.planner_model in ("sim:gpt-4o", "sim:gemini-2.5-pro")
    open_items = ReviewItem.objects.filter(stage="hv1", status="open")
    assert set(open_items.values_list("subject_id", flat=True)) == set(
        batch.characters.filter(status=CharacterStatus.PENDING_HV1).values_list("pk", flat=True)
    )


@pytest.mark.django_db
def test_every_model_call_is_on_the_ledger_with_cost_and_latency(
    eager: None, django_capture_on_commit_callbacks: Any
) -> None:
    batch = launch(django_capture_on_commit_callbacks, count=5, seed=1, params=faults())
    calls = ModelCall.objects.filter(batch=batch)
    # planner + renderer + two judge questions (SC and PQ) per character
    assert calls.count() == 5 * 4
    assert set(calls.values_list("status", flat=True)) == {CallStatus.OK}
    assert not calls.filter(latency_ms__isnull=True).exists()
    assert all(c.cost_usd > 0 for c in calls.filter(role="planner"))
    render = calls.filter(role="character_renderer").first()
    assert render.prompt_name == "character_render" and len(render.prompt_version) == 12
    assert render.attempt is not None and render.images_out == 1


@pytest.mark.django_db
def test_an_unparseable_answer_is_a_failed_call_never_a_made_up_value(
    eager: None, django_capture_on_commit_callbacks: Any, settings: Any
) -> None:
    settings.HILAPP_PARSE_RETRIES = 1
    batch = launch(
        django_capture_on_commit_callbacks, count=3, seed=2, params=faults(malformed_output=1.0)
    )
    for character in batch.characters.all():
        assert character.status == CharacterStatus.FAILED
        assert "planner: malformed" in character.reason
        assert not character.visual_description and character.viescore_overall is None
    failed = ModelCall.objects.filter(batch=batch, status=CallStatus.FAILED)
    assert failed.count() == 3 * 2  # first try + one parse retry each
    assert set(failed.values_list("error_kind", flat=True)) == {"malformed"}


@pytest.mark.django_db
def test_a_budget_stops_the_batch_before_it_overspends(
    eager: None, django_capture_on_commit_callbacks: Any
) -> None:
    batch = launch(
        django_capture_on_commit_callbacks, count=20, seed=3, budget_usd="0.15", params=faults()
    )
    batch.refresh_from_db()
    assert batch.status == BatchStatus.PAUSED
    assert "budget reached" in batch.note
    spent = sum(c.cost_usd for c in ModelCall.objects.filter(batch=batch))
    assert spent <= Decimal("0.15")
    # The rest wait in their working states (resuming the batch picks them up); none is lost.
    waiting = batch.characters.filter(
        status__in=[CharacterStatus.DRAFTING, CharacterStatus.RENDERING]
    )
    assert waiting.exists()
    assert not batch.characters.filter(status=CharacterStatus.FAILED).exists()


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"count": 0}, "between 1 and"),
        ({"count": "ten"}, "whole number"),
        ({"count": 5, "budget_usd": "-3"}, "positive"),
        ({"count": 5, "params": {"roles": {"painter": "sim:x"}}}, "unknown role 'painter'"),
        ({"count": 5, "params": {"roles": {"planner": "acme:gpt"}}}, "unknown provider"),
        ({"count": 5, "params": {"sim": {"faults": {"low_viescore": 2}}}}, "between 0 and 1"),
        ({"count": 5, "params": {"subject_categories": ["dragons"]}}, "unknown subject"),
    ],
)
def test_bad_launch_parameters_are_refused_and_create_nothing(
    kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(LaunchError, match=message):
        batch_launch_characters(**kwargs)
    assert not Batch.objects.exists() and not Character.objects.exists()


@pytest.mark.django_db
def test_category_filters_restrict_the_sampled_characters(
    eager: None, django_capture_on_commit_callbacks: Any
) -> None:
    batch = launch(
        django_capture_on_commit_callbacks,
        count=12,
        seed=5,
        params={
            **faults(),
            "subject_categories": ["plant", "marine_life"],
            "profession_categories": ["military_defense"],
        },
    )
    assert set(batch.characters.values_list("subject_category", flat=True)) <= {
        "plant",
        "marine_life",
    }
    assert set(batch.characters.values_list("profession_category", flat=True)) == {
        "military_defense"
    }


@pytest.mark.django_db
def test_hv1_decision_locks_or_rejects_once(
    eager: None, django_capture_on_commit_callbacks: Any
) -> None:
    batch = launch(django_capture_on_commit_callbacks, count=2, seed=6, params=faults())
    first, second = batch.characters.order_by("index")
    assert character_apply_review(character_id=first.pk, approved=True)
    assert not character_apply_review(character_id=first.pk, approved=False)  # already decided
    assert character_apply_review(character_id=second.pk, approved=False)
    first.refresh_from_db()
    second.refresh_from_db()
    assert (first.status, second.status) == (CharacterStatus.LOCKED, CharacterStatus.REJECTED)


@pytest.mark.django_db
def test_same_seed_same_characters(eager: None, django_capture_on_commit_callbacks: Any) -> None:
    def run() -> list[tuple[str, str, str, str]]:
        batch = launch(django_capture_on_commit_callbacks, count=6, seed=9, params=faults())
        return list(
            batch.characters.order_by("index").values_list(
                "subject_type", "profession", "visual_description", "status"
            )
        )

    assert run() == run()
