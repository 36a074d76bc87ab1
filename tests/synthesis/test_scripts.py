"""Story script validation (each rule), and the repair and drop paths of Phase II."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from hilapp.celery import app as celery_app
from synthesis.models import Batch, ModelCall
from synthesis.services.scripts import script_validate
from synthesis.services.stories import batch_launch_stories
from synthesis.states import StoryStatus
from tests.synthesis.story_factories import locked_characters, sim_params

CIDS = ["C1-00001", "C1-00002"]
GOOD_CHAR = {
    "cid": "C1-00001",
    "pid": "pose.standing_neutral",
    "eid": "expr.happy",
    "ctag": "comp.wide_shot",
}


def _frame(*characters: dict[str, str], text: str = "They meet at dawn.") -> dict[str, Any]:
    return {"frame_text": text, "characters": [dict(c) for c in characters]}


def _good(frames: int = 3) -> dict[str, Any]:
    second = {**GOOD_CHAR, "cid": "C1-00002"}
    return {"title": "Dawn", "frames": [_frame(GOOD_CHAR, second) for _ in range(frames)]}


def check(data: Any, **kwargs: Any) -> list[str]:
    kwargs = {"cids": CIDS, "min_frames": 2, "max_frames": 4, **kwargs}
    return script_validate(data, **kwargs).errors


def test_vocabulary_ids_used_by_the_tests_exist() -> None:
    assert check(_good()) == []
    assert script_validate(_good(), cids=CIDS, min_frames=2, max_frames=4).valid


def test_schema_errors_are_readable() -> None:
    errors = check({"title": "", "frames": [{"frame_text": "x", "characters": []}], "extra": 1})
    assert any("title" in e for e in errors)
    assert any("frames.0.characters" in e for e in errors)
    assert any("extra" in e for e in errors)
    assert check("not json at all")[0].startswith("schema:")


def test_frame_count_out_of_range() -> None:
    assert check(_good(1)) == ["the script has 1 frames; it must have between 2 and 4 frames"]
    assert "between 2 and 4" in check(_good(5))[0]


def test_cid_not_in_the_story() -> None:
    script = _good()
    script["frames"][1]["characters"][0]["cid"] = "C9-99999"
    errors = check(script)
    assert errors == [
        "frame 2: CID 'C9-99999' is not a character of this story (use only C1-00001, C1-00002)"
    ]


def test_every_character_must_appear() -> None:
    script = {"title": "Alone", "frames": [_frame(GOOD_CHAR) for _ in range(3)]}
    assert check(script) == [
        "character C1-00002 never appear(s) in any frame; every character must appear at least once"
    ]


@pytest.mark.parametrize(
    ("field", "value", "what"),
    [
        ("pid", "pose.moonwalking", "a pose ID"),
        ("eid", "expr.pose_standing", "an expression ID"),
        ("ctag", "comp.fisheye_dream", "a composition tag"),
        ("pid", "expr.happy", "a pose ID"),  # an ID of the wrong kind is not a pose
    ],
)
def test_only_vocabulary_ids(field: str, value: str, what: str) -> None:
    script = _good()
    script["frames"][2]["characters"][1][field] = value
    errors = check(script)
    assert len(errors) == 1
    assert errors[0] == (
        f"frame 3, character 'C1-00002': {field} {value!r} is not {what} of the control vocabulary"
    )


def test_no_duplicate_character_in_a_frame() -> None:
    script = _good()
    script["frames"][0]["characters"].append(dict(GOOD_CHAR))
    assert check(script) == ["frame 1: character 'C1-00001' appears more than once"]


def test_several_errors_are_all_reported() -> None:
    script = _good(6)
    script["frames"][0]["characters"][0]["pid"] = "pose.nope"
    assert len(check(script)) == 2


# --- repair and drop through the planner ---------------------------------------------------------


@pytest.fixture
def eager(settings: Any) -> Iterator[None]:
    settings.HILAPP_TEMPLATE_SIZE = 96
    settings.HILAPP_RETRY_BASE_S = 0
    celery_app.conf.task_always_eager = True
    celery_app.conf.task_eager_propagates = True
    try:
        yield
    finally:
        celery_app.conf.task_always_eager = False


def launch(capture: Any, **kwargs: Any) -> Batch:
    with capture(execute=True):
        return batch_launch_stories(**kwargs)


@pytest.mark.django_db
def test_an_invalid_script_is_repaired_with_the_errors(
    eager: None, django_capture_on_commit_callbacks: Any
) -> None:
    locked_characters(5, size=96)
    params = {**sim_params(invalid_script=0.5), "min_frames": 3, "max_frames": 5}
    batch = launch(django_capture_on_commit_callbacks, count=16, seed=3, params=params)
    repaired = batch.stories.filter(status=StoryStatus.PENDING_HV2, repairs__gte=1)
    assert repaired.exists()
    for story in repaired:
        calls = ModelCall.objects.filter(subject=f"story:{story.pk}", role="planner")
        names = list(calls.values_list("prompt_name", flat=True))
        assert names == ["story_script"] + ["story_repair"] * story.repairs
        repair_prompt = calls.filter(prompt_name="story_repair").first().inputs["prompt"]
        assert "VALIDATION ERRORS" in repair_prompt
        # The repaired script is valid against the story's own cast.
        cids = [c.cid for c in story.characters.all()]
        assert script_validate(story.script, cids=cids, min_frames=3, max_frames=5).valid
        assert story.validation_errors == []
        assert story.planner_model.startswith("sim:")


@pytest.mark.django_db
def test_a_script_still_invalid_after_the_repairs_is_dropped_with_its_reason(
    eager: None, django_capture_on_commit_callbacks: Any, settings: Any
) -> None:
    settings.HILAPP_SCRIPT_MAX_REPAIRS = 2
    locked_characters(5, size=96)
    params = {**sim_params(invalid_script=1.0), "min_frames": 3, "max_frames": 5}
    batch = launch(django_capture_on_commit_callbacks, count=5, seed=2, params=params)
    for story in batch.stories.all():
        assert story.status == StoryStatus.DROPPED
        assert story.repairs == 2
        assert story.reason.startswith("still invalid after 2 repairs: ")
        assert story.validation_errors and story.validation_errors[0] in story.reason
        assert story.script is not None  # the last draft is kept for the record
        assert ModelCall.objects.filter(subject=f"story:{story.pk}").count() == 3
        assert not story.frames.exists()
