"""Phase III through its services, each branch driven by the simulator's fault rates.

Tasks run eagerly here (every on-commit send runs at once), so one call drives a story through
its whole loop; ``test_phase3_workers.py`` runs the same pipeline on real worker processes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.db import transaction

from hilapp.imaging import sha256_hex, to_png
from review.models import ItemStatus, ReviewItem
from review.services import vote_cast
from synthesis.artifacts import read_bytes, save_png
from synthesis.models import Batch, Frame, FrameCharacter, GateAttempt, ModelCall, Story
from synthesis.providers.sim_drawing import Figure, draw_template
from synthesis.services import frames as frames_service
from synthesis.services.frames import FRAME_GATE
from synthesis.services.hv3 import frame_apply_hv3
from synthesis.services.references import REFERENCE_GATE, frame_references_advance
from synthesis.services.stories import batch_launch_stories, story_apply_review
from synthesis.states import (
    ApprovalPath,
    AttemptAction,
    AttemptStatus,
    FrameStatus,
    ReferenceStatus,
    StoryStatus,
)
from tests.synthesis.story_factories import locked_characters, sim_params

SIZE = 96


Run = Callable[..., Batch]


@pytest.fixture
def run_stories(eager: None, django_capture_on_commit_callbacks: Any) -> Run:
    """Launch stories with the given fault rates and approve every script (HV2)."""

    def run(count: int = 4, seed: int = 1, max_cast: int = 3, **rates: float) -> Batch:
        locked_characters(5, size=SIZE, seed=seed)
        params = {**sim_params(**rates), "min_frames": 2, "max_frames": 3, "max_cast": max_cast}
        with django_capture_on_commit_callbacks(execute=True):
            batch = batch_launch_stories(count=count, seed=seed, params=params)
        for story in batch.stories.filter(status=StoryStatus.PENDING_HV2):
            with django_capture_on_commit_callbacks(execute=True):
                assert story_apply_review(story_id=story.pk, approved=True, reason="HV2 ok")
        return batch

    return run


def set_faults(batch: Batch, **rates: float) -> None:
    Batch.objects.filter(pk=batch.pk).update(params={**batch.params, **sim_params(**rates)})


def frames_of(batch: Batch) -> Any:
    return Frame.objects.filter(story__batch=batch)


def chain(frame: Frame) -> list[GateAttempt]:
    return list(GateAttempt.objects.filter(frame=frame).order_by("number"))


def hv3(capture: Any, frame: Frame, choice: str, **kwargs: Any) -> bool:
    with capture(execute=True):
        return frame_apply_hv3(frame_id=frame.pk, choice=choice, reason=f"HV3 {choice}", **kwargs)


@pytest.mark.django_db
def test_clean_run_approves_every_frame_and_completes_every_story(run_stories: Run) -> None:
    batch = run_stories(count=4)
    assert set(batch.stories.values_list("status", flat=True)) == {StoryStatus.COMPLETE}
    for frame in frames_of(batch):
        assert frame.status == FrameStatus.APPROVED
        assert frame.approval_path == ApprovalPath.GATE
        assert frame.synthesizer_model.startswith("sim:")
        assert frame.arbitrator_model.startswith("sim:")
        assert frame.image_sha256 == sha256_hex(read_bytes(frame.image))
        assert [a.action for a in chain(frame)] == [AttemptAction.INITIAL]
        for fc in frame.cast.all():
            assert fc.reference_status == ReferenceStatus.APPROVED
            assert fc.iterations == 1 and fc.reference and fc.reference_model.startswith("sim:")
    for story in batch.stories.all():
        assert story.completed_at is not None
        assert story.frames.count() == len(story.script["frames"])


@pytest.mark.django_db
def test_a_low_reference_score_triggers_apt(run_stories: Run) -> None:
    batch = run_stories(count=5, low_viescore=0.5)
    retried = FrameCharacter.objects.filter(frame__story__batch=batch, iterations__gte=2)
    assert retried.exists()
    for fc in retried:
        attempts = list(fc.attempts.order_by("number"))
        first, second = attempts[0], attempts[1]
        assert first.status == AttemptStatus.FAILED and first.score_overall <= 7.0
        assert second.action == AttemptAction.APT
        assert "failed the gate" in second.diagnostic
        assert "IMPORTANT" in second.prompt_text and second.prompt_text != first.prompt_text
        # the APT call is on the ledger, against the attempt it diagnosed
        assert ModelCall.objects.filter(attempt=first, prompt_name="apt", status="ok").exists()
        if fc.reference_status == ReferenceStatus.APPROVED:
            assert attempts[-1].status == AttemptStatus.PASSED
            assert attempts[-1].score_overall > 7.0
            assert fc.reference == attempts[-1].image
            assert fc.iterations == len(attempts)


@pytest.mark.django_db
def test_a_local_error_triggers_local_image_editing(run_stories: Run) -> None:
    batch = run_stories(count=5, wrong_pose=0.5, lie_failure=0.0)
    lie = GateAttempt.objects.filter(frame__story__batch=batch, action=AttemptAction.LIE)
    assert lie.exists()
    for attempt in lie:
        before = GateAttempt.objects.get(frame=attempt.frame, number=attempt.number - 1)
        assert before.status == AttemptStatus.FAILED and before.error_scope == "local"
        assert attempt.instruction == before.report["edit_instruction"] != ""
        assert attempt.source_image == before.image
        assert attempt.prompt_name == "lie" and attempt.instruction in attempt.prompt_text
        assert attempt.status == AttemptStatus.PASSED  # the edit removed the local fault
        call = ModelCall.objects.get(attempt=attempt, role="local_editor", status="ok")
        assert call.output["image_sha256"] == attempt.image_sha256
        assert attempt.frame.status == FrameStatus.APPROVED


@pytest.mark.django_db
def test_a_global_error_triggers_apt_and_a_full_regeneration(run_stories: Run) -> None:
    batch = run_stories(count=5, identity_drift=0.4)
    regenerated = GateAttempt.objects.filter(frame__story__batch=batch, action=AttemptAction.APT)
    assert regenerated.exists()
    for attempt in regenerated:
        before = GateAttempt.objects.get(frame=attempt.frame, number=attempt.number - 1)
        assert before.error_scope == "global"
        assert before.report["identity_consistency"]["verdict"] == "fail"
        assert "identity_drift" in attempt.diagnostic
        assert attempt.prompt_name == "frame_synthesis" and "IMPORTANT" in attempt.prompt_text
        assert attempt.source_image == ""
        assert ModelCall.objects.filter(attempt=attempt, role="frame_synthesizer").exists()
        assert ModelCall.objects.filter(attempt=before, prompt_name="apt").exists()


@pytest.mark.django_db
def test_three_failed_attempts_hard_fail_the_frame_into_hv3(run_stories: Run) -> None:
    batch = run_stories(count=3, identity_drift=1.0)
    for frame in frames_of(batch):
        assert frame.status == FrameStatus.HARD_FAILED
        attempts = chain(frame)
        assert [a.number for a in attempts] == [1, 2, 3]
        assert [a.status for a in attempts] == [AttemptStatus.FAILED] * 3
        assert "3 consecutive failed attempts" in frame.reason
        assert ReviewItem.objects.filter(stage="hv3", subject_id=frame.pk, status="open").exists()
    assert set(batch.stories.values_list("status", flat=True)) == {StoryStatus.APPROVED}


@pytest.mark.django_db
def test_hv3_regenerate_gives_a_fresh_round(
    run_stories: Run, django_capture_on_commit_callbacks: Any
) -> None:
    batch = run_stories(count=2, identity_drift=1.0)
    set_faults(batch)  # the model behaves now
    for frame in frames_of(batch):
        assert hv3(django_capture_on_commit_callbacks, frame, "regenerate")
        frame.refresh_from_db()
        assert frame.status == FrameStatus.APPROVED and frame.round == 2
        assert frame.approval_path == ApprovalPath.GATE
        last = chain(frame)[-1]
        assert (last.number, last.round, last.action) == (4, 2, AttemptAction.HV3_REGENERATE)
        assert not hv3(django_capture_on_commit_callbacks, frame, "regenerate")  # applied once
    assert set(batch.stories.values_list("status", flat=True)) == {StoryStatus.COMPLETE}


@pytest.mark.django_db
def test_hv3_regenerate_gives_failed_references_a_fresh_budget(
    run_stories: Run, django_capture_on_commit_callbacks: Any, settings: Any
) -> None:
    settings.HILAPP_REFERENCE_MAX_ATTEMPTS = 2
    batch = run_stories(count=2, low_viescore=1.0)
    frames = list(frames_of(batch))
    for frame in frames:
        assert frame.status == FrameStatus.HARD_FAILED
        assert "reference of" in frame.reason and not frame.attempts.exists()
        failed = frame.cast.filter(reference_status=ReferenceStatus.FAILED)
        assert failed.exists() and all(fc.iterations == 2 for fc in failed)
    set_faults(batch)
    for frame in frames:
        assert hv3(django_capture_on_commit_callbacks, frame, "regenerate")
        frame.refresh_from_db()
        assert frame.status == FrameStatus.APPROVED and frame.round == 2
        for fc in frame.cast.all():
            assert fc.reference_status == ReferenceStatus.APPROVED
            assert fc.round == 2 and fc.iterations == 1
            assert fc.attempts.order_by("number").last().action == AttemptAction.HV3_REGENERATE
    assert set(batch.stories.values_list("status", flat=True)) == {StoryStatus.COMPLETE}


@pytest.mark.django_db
def test_hv3_correct_with_an_uploaded_image_approves_it_as_human_work(
    run_stories: Run, django_capture_on_commit_callbacks: Any
) -> None:
    batch = run_stories(count=1, identity_drift=1.0)
    frame = frames_of(batch).first()
    fixed = to_png(
        draw_template(
            Figure(cid="X", name="X", palette=("#112233", "#445566"), category="mammal"), size=SIZE
        )
    )
    name, digest = save_png(fixed, folder="review/corrections")
    assert hv3(django_capture_on_commit_callbacks, frame, "correct", image_name=name)
    frame.refresh_from_db()
    assert frame.status == FrameStatus.APPROVED
    assert frame.approval_path == ApprovalPath.HV3_UPLOAD
    assert (frame.image, frame.image_sha256) == (name, digest)
    assert len(chain(frame)) == 3  # no attempt for human work


@pytest.mark.django_db
def test_hv3_correct_with_an_instruction_edits_and_goes_through_the_gate(
    run_stories: Run, django_capture_on_commit_callbacks: Any
) -> None:
    batch = run_stories(count=1, wrong_pose=1.0, lie_failure=1.0)
    frame = frames_of(batch).first()
    assert frame.status == FrameStatus.HARD_FAILED
    assert [a.action for a in chain(frame)] == [
        AttemptAction.INITIAL,
        AttemptAction.LIE,
        AttemptAction.LIE,
    ]
    set_faults(batch, wrong_pose=1.0)  # the editor works now; fresh frames would still be wrong
    last_image = chain(frame)[-1].image
    instruction = "Make the fox raise its right paw; keep everything else unchanged."
    assert hv3(django_capture_on_commit_callbacks, frame, "correct", instruction=instruction)
    frame.refresh_from_db()
    assert frame.status == FrameStatus.APPROVED
    assert frame.approval_path == ApprovalPath.HV3_EDIT
    edit = chain(frame)[-1]
    assert (edit.number, edit.round, edit.action) == (4, 2, AttemptAction.HV3_EDIT)
    assert edit.instruction == instruction and edit.source_image == last_image
    assert edit.status == AttemptStatus.PASSED and frame.image == edit.image


@pytest.mark.django_db
def test_hv3_discard_and_the_story_completes(
    run_stories: Run, django_capture_on_commit_callbacks: Any
) -> None:
    batch = run_stories(count=1, identity_drift=1.0)
    story = batch.stories.get()
    frames = list(story.frames.all())
    for frame in frames[:-1]:
        assert hv3(django_capture_on_commit_callbacks, frame, "discard")
        assert Frame.objects.get(pk=frame.pk).status == FrameStatus.DISCARDED
    assert Story.objects.get(pk=story.pk).status == StoryStatus.APPROVED  # one frame still open
    assert hv3(django_capture_on_commit_callbacks, frames[-1], "discard")
    assert Story.objects.get(pk=story.pk).status == StoryStatus.COMPLETE


@pytest.mark.django_db
def test_hv3_decided_by_expert_votes(
    run_stories: Run, django_capture_on_commit_callbacks: Any, make_user: Any
) -> None:
    batch = run_stories(count=1, identity_drift=1.0)
    frame = frames_of(batch).first()
    item = ReviewItem.objects.get(stage="hv3", subject_id=frame.pk)
    experts = [make_user(f"hv3expert{i}") for i in range(2)]
    with django_capture_on_commit_callbacks(execute=True):
        for i, expert in enumerate(experts):
            vote_cast(item_id=item.pk, expert=expert, choice="discard", idempotency_key=f"k{i}")
    assert ReviewItem.objects.get(pk=item.pk).status == ItemStatus.DECIDED
    assert Frame.objects.get(pk=frame.pk).status == FrameStatus.DISCARDED


@pytest.mark.django_db
def test_frame_inputs_respect_the_synthesizers_image_limit(
    run_stories: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    # gemini-2.5-flash-image takes at most 3 images: more references go onto one contact sheet.
    monkeypatch.setattr(frames_service, "max_input_images", lambda role, ctx, entry: 3)
    batch = run_stories(count=15, seed=5, max_cast=5)
    calls = ModelCall.objects.filter(batch=batch, role="frame_synthesizer")
    assert calls.exists() and max(calls.values_list("images_in", flat=True)) == 3
    crowded = [f for f in frames_of(batch) if f.cast.count() > 3]
    assert crowded
    for frame in crowded:
        call = ModelCall.objects.get(attempt__frame=frame, role="frame_synthesizer")
        assert len(call.inputs["images"]) == 3


@pytest.mark.django_db
def test_a_worker_step_that_finds_its_object_past_the_step_does_nothing(
    run_stories: Run,
) -> None:
    batch = run_stories(count=1)
    frame = frames_of(batch).first()
    calls = ModelCall.objects.count()
    assert frame_references_advance(frame_id=frame.pk) is False
    assert not frame_apply_hv3(frame_id=frame.pk, choice="discard", reason="late")
    from synthesis.gate import gate_run

    gate_run(FRAME_GATE, frame.pk)
    gate_run(REFERENCE_GATE, frame.cast.first().pk)
    assert ModelCall.objects.count() == calls
    assert Frame.objects.get(pk=frame.pk).status == FrameStatus.APPROVED


@pytest.mark.django_db(transaction=True)
def test_opening_an_attempt_a_racer_opened_gives_none_and_changes_nothing(
    run_stories: Run,
) -> None:
    from synthesis.gate import Retry, attempt_open, attempt_prompt

    frame = frames_of(run_stories(count=1)).first()
    before = chain(frame)
    taken = before[-1]
    plan = Retry(action=AttemptAction.APT, prompt=attempt_prompt(taken), diagnostic="racer")

    def open_taken() -> GateAttempt | None:
        return attempt_open(FRAME_GATE, frame.pk, number=taken.number, round_=1, plan=plan)

    assert open_taken() is None  # in autocommit
    with transaction.atomic():  # inside a transaction, which goes on
        assert open_taken() is None
        Frame.objects.filter(pk=frame.pk).update(reason="written after the racer")
    assert Frame.objects.get(pk=frame.pk).reason == "written after the racer"
    assert chain(frame) == before
    assert not GateAttempt.objects.filter(diagnostic="racer").exists()


def _pending_regeneration(run_stories: Run, capture: Any) -> Frame:
    """A hard-failed frame sent round again by HV3, its new attempt not yet worked on."""
    batch = run_stories(count=1, identity_drift=1.0)
    set_faults(batch)  # the model behaves now
    frame = frames_of(batch).first()
    with capture(execute=False):  # the gate's message is never delivered
        assert frame_apply_hv3(frame_id=frame.pk, choice="regenerate", reason="again")
    assert chain(frame)[-1].status == AttemptStatus.PENDING
    return frame


def _lease_claims(queries: Any) -> int:
    return sum(
        q["sql"].startswith('UPDATE "synthesis_gateattempt" SET "lease_until"') for q in queries
    )


@pytest.mark.django_db
def test_a_run_that_produces_and_judges_an_attempt_claims_it_once(
    run_stories: Run, django_capture_on_commit_callbacks: Any
) -> None:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from synthesis.gate import gate_run

    frame = _pending_regeneration(run_stories, django_capture_on_commit_callbacks)
    with CaptureQueriesContext(connection) as queries:
        gate_run(FRAME_GATE, frame.pk)
    assert _lease_claims(queries) == 1
    judged = chain(frame)[-1]
    assert judged.status == AttemptStatus.PASSED and judged.lease_until is None


@pytest.mark.django_db
def test_a_run_that_dies_before_judging_leaves_the_kept_lease_to_expire(
    run_stories: Run, django_capture_on_commit_callbacks: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from datetime import timedelta

    from django.utils import timezone

    from synthesis.gate import Step, gate_run

    frame = _pending_regeneration(run_stories, django_capture_on_commit_callbacks)

    def worker_dies(*args: Any) -> None:
        raise RuntimeError("killed between produce and judge")

    with monkeypatch.context() as patch:
        patch.setattr(type(FRAME_GATE), "judge", worker_dies)
        with pytest.raises(RuntimeError):
            gate_run(FRAME_GATE, frame.pk)
    produced = chain(frame)[-1]
    assert produced.status == AttemptStatus.PRODUCED
    assert produced.lease_until is not None and produced.lease_until > timezone.now()
    calls = ModelCall.objects.count()

    assert gate_run(FRAME_GATE, frame.pk) == Step.BUSY  # a second delivery pays for nothing
    assert ModelCall.objects.count() == calls
    expired = timezone.now() - timedelta(seconds=1)
    GateAttempt.objects.filter(pk=produced.pk).update(lease_until=expired)
    assert gate_run(FRAME_GATE, frame.pk) == Step.DONE
    assert chain(frame)[-1].status == AttemptStatus.PASSED
    assert Frame.objects.get(pk=frame.pk).status == FrameStatus.APPROVED


@pytest.mark.django_db
def test_an_attempt_judged_on_another_queue_is_left_unleased_for_it(
    run_stories: Run, django_capture_on_commit_callbacks: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from synthesis import gate
    from synthesis.providers.base import Role

    frame = _pending_regeneration(run_stories, django_capture_on_commit_callbacks)
    # The arbitrator is an API model: its step belongs to the api queue.
    monkeypatch.setattr(
        gate, "queue_of", lambda call: "api" if call and call.role == Role.ARBITRATOR else "celery"
    )
    with django_capture_on_commit_callbacks(execute=False) as sent:
        assert gate.gate_run(FRAME_GATE, frame.pk, here="celery") == gate.Step.MOVED
    produced = chain(frame)[-1]
    assert produced.status == AttemptStatus.PRODUCED
    assert produced.lease_until is None  # the api worker claims it at once
    assert len(sent) == 1


@pytest.mark.django_db
def test_an_approval_before_a_frames_last_reference_costs_one_query(
    run_stories: Run, django_assert_num_queries: Any
) -> None:
    from synthesis.models import Character

    frame = frames_of(run_stories(count=1)).first()
    assert frame is not None
    approved = frame.cast.first()
    assert approved is not None
    # A second reference in the cast, whatever the story drew: a character not yet in the frame.
    in_flight = FrameCharacter.objects.get(pk=approved.pk)
    in_flight.pk = None
    in_flight.slot = frame.cast.count() + 1
    in_flight.character = Character.objects.exclude(appearances__frame=frame).first()
    in_flight.save()
    FrameCharacter.objects.filter(pk=in_flight.pk).update(reference_status=ReferenceStatus.EDITING)
    Frame.objects.filter(pk=frame.pk).update(status=FrameStatus.REFERENCES)

    with django_assert_num_queries(1):
        assert frame_references_advance(frame_id=frame.pk) is False
    assert Frame.objects.get(pk=frame.pk).status == FrameStatus.REFERENCES

    FrameCharacter.objects.filter(pk=in_flight.pk).update(reference_status=ReferenceStatus.APPROVED)
    assert frame_references_advance(frame_id=frame.pk) is True  # the last approval moves it on
    assert Frame.objects.get(pk=frame.pk).status != FrameStatus.REFERENCES


@pytest.mark.django_db
def test_provenance_shows_the_whole_history_to_admins_only(
    run_stories: Run, django_capture_on_commit_callbacks: Any, make_user: Any, client: Any
) -> None:
    from synthesis.services.provenance import frame_provenance

    batch = run_stories(count=2, identity_drift=1.0, low_viescore=0.3)
    set_faults(batch)
    frame = frames_of(batch).first()
    assert hv3(django_capture_on_commit_callbacks, frame, "regenerate")
    history = frame_provenance(frame_id=frame.pk)
    assert history["frame"]["status"] == FrameStatus.APPROVED
    assert [a["number"] for a in history["attempts"]] == [1, 2, 3, 4]
    assert [a["action"] for a in history["attempts"]][-1] == AttemptAction.HV3_REGENERATE
    for attempt in history["attempts"]:
        assert attempt["prompt_name"] == "frame_synthesis" and len(attempt["prompt_version"]) == 12
        assert attempt["image_url"] and attempt["producer_model"] and attempt["judge_model"]
        roles = {c["role"] for c in attempt["calls"]}
        assert {"frame_synthesizer", "arbitrator"} <= roles
        assert attempt["cost_usd"] > 0
    assert history["attempts"][0]["report"]["error_scope"] == "global"
    assert history["attempts"][1]["diagnostic"]  # APT
    assert all(r["attempts"] for r in history["references"])
    assert history["story"]["script_calls"][0]["prompt"] == "story_script"
    assert [r["stage"] for r in history["reviews"]] == ["hv2", "hv3"]
    assert any(c["new"] == "hard_failed" for c in history["changes"])
    assert history["cost_usd"] > 0

    url = f"/synthesis/frames/{frame.pk}/provenance/"
    client.force_login(make_user("prov-expert"))
    assert client.get(url).status_code == 403
    client.force_login(make_user("prov-admin", role="admin"))
    page = client.get(url)
    assert page.status_code == 200
    assert b"HV3 full regeneration" in page.content and b"frame_synthesis @" in page.content
    assert client.get("/synthesis/frames/999999/provenance/").status_code == 404
