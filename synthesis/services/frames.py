"""Phase III: quality-gated frame synthesis, as two policies of the one gate (``synthesis.gate``).

Sub-loop (``REFERENCE_GATE``), per (frame, character): the reference editor turns the CID
template into R_ij with the frame's pose and expression; VIEScore-edit must exceed the threshold,
otherwise Auto-Prompt Tuning rewrites the prompt and the edit runs again (bounded). A reference
that never passes hard-fails its frame.

Main loop (``FRAME_GATE``), per frame: the frame synthesizer renders from the frame prompt and the
references; the IQCC arbitrator checks identity, control accuracy and semantic alignment. A global
error → APT and a full regeneration; a local error → local image editing with the arbitrator's
instruction; the attempt budget spent → hard failure → HV3, whose decision ``frame_apply_hv3``
applies (regenerate with a fresh round, correct by upload or by instruction, discard).
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import F, Max

from hilapp.imaging import fit_inputs, sha256_hex
from review.services import review_item_open
from synthesis import dispatch
from synthesis.artifacts import read_bytes
from synthesis.gate import (
    GatePolicy,
    Judgement,
    Produced,
    Retry,
    attempt_open,
    attempts_of,
)
from synthesis.models import Frame, FrameCharacter, GateAttempt
from synthesis.prompts import RenderedPrompt, render_prompt
from synthesis.providers.base import ImageRequest, ProviderError, Role
from synthesis.providers.calls import (
    CallContext,
    call_image,
    max_input_images,
    select_entry,
)
from synthesis.services.batches import batch_accepts_work
from synthesis.services.characters import figure_of
from synthesis.services.iqcc import iqcc_judge
from synthesis.services.judging import apt_rewrite, viescore_judge
from synthesis.states import (
    ApprovalPath,
    AttemptAction,
    AttemptKind,
    AttemptStatus,
    FrameStatus,
    ReferenceStatus,
)
from synthesis.transitions import transition
from synthesis.vocabulary import load_vocabulary

SYNTHESIS_ACTIONS = (AttemptAction.INITIAL, AttemptAction.APT, AttemptAction.HV3_REGENERATE)
EDIT_ACTIONS = (AttemptAction.LIE, AttemptAction.HV3_EDIT)
HV3_CHOICES = ("correct", "regenerate", "discard")


def frame_context(frame: Frame, attempt_id: int | None = None, subject: str = "") -> CallContext:
    return CallContext.for_batch(
        frame.story.phase3_batch, subject=subject or f"frame:{frame.pk}", attempt_id=attempt_id
    )


def _prompt_of(attempt: GateAttempt) -> RenderedPrompt:
    return RenderedPrompt(attempt.prompt_name, attempt.prompt_version, attempt.prompt_text)


def _next_number(policy: GatePolicy, subject_id: int) -> int:
    last = attempts_of(policy, subject_id).aggregate(n=Max("number"))["n"]
    return int(last or 0) + 1


def _control(control_id: str) -> dict[str, str]:
    entry = load_vocabulary().get(control_id)
    return {"id": entry.id, "description": entry.description}


def reference_prompt(fc: FrameCharacter) -> RenderedPrompt:
    c = fc.character
    return render_prompt(
        "reference_edit",
        name=c.name,
        visual_description=c.visual_description,
        pose=_control(fc.pid),
        expression=_control(fc.eid),
    )


def frame_cast(frame: Frame) -> list[FrameCharacter]:
    return list(frame.cast.select_related("character").order_by("slot"))


def _characters_context(cast: list[FrameCharacter]) -> list[dict[str, Any]]:
    return [
        {
            "cid": fc.character.cid,
            "name": fc.character.name,
            "visual_description": fc.character.visual_description,
            "pose": _control(fc.pid),
            "expression": _control(fc.eid),
            "composition": _control(fc.ctag),
            "reference_index": i,
        }
        for i, fc in enumerate(cast, start=1)
    ]


def frame_prompt(frame: Frame, cast: list[FrameCharacter]) -> RenderedPrompt:
    return render_prompt(
        "frame_synthesis",
        genre=frame.story.genre,
        frame_text=frame.frame_text,
        characters=_characters_context(cast),
    )


def _sim_subject(frame: Frame, cast: list[FrameCharacter]) -> dict[str, Any]:
    """What the simulator draws (real providers read the prompt and the images)."""
    return {
        "figures": [figure_of(fc.character, pose_id=fc.pid, expression_id=fc.eid) for fc in cast],
        "frame_text": frame.frame_text,
        "composition_ids": sorted({fc.ctag for fc in cast}),
    }


# --- the reference sub-loop ----------------------------------------------------------------------


class ReferenceGate(GatePolicy):
    kind = AttemptKind.REFERENCE
    subject_field = "reference"

    def load(self, subject_id: int) -> FrameCharacter:
        return FrameCharacter.objects.select_related(
            "character", "frame__story__batch", "frame__story__frames_batch"
        ).get(pk=subject_id)

    def is_active(self, subject: FrameCharacter) -> bool:
        return subject.reference_status == ReferenceStatus.EDITING

    def max_attempts(self) -> int:
        return int(settings.HILAPP_REFERENCE_MAX_ATTEMPTS)

    def _ctx(self, fc: FrameCharacter, attempt_id: int | None) -> CallContext:
        return frame_context(fc.frame, attempt_id, subject=f"reference:{fc.pk}")

    def produce(self, subject: FrameCharacter, attempt: GateAttempt) -> Produced:
        size = settings.HILAPP_TEMPLATE_SIZE
        request = ImageRequest(
            role=Role.REFERENCE_EDITOR,
            prompt=_prompt_of(attempt),
            images=[read_bytes(subject.character.template)],
            size=(size, size),
            seed_key=f"reference:{subject.pk}:{attempt.number}",
            subject={
                "figure": figure_of(
                    subject.character, pose_id=subject.pid, expression_id=subject.eid
                )
            },
        )
        result, call = call_image(request, self._ctx(subject, attempt.pk))
        return Produced(image=result.image, model_label=call.model_label)

    def judge(self, subject: FrameCharacter, attempt: GateAttempt) -> Judgement:
        return viescore_judge(
            mode="edit",
            images=[read_bytes(subject.character.template), read_bytes(attempt.image)],
            text=attempt.prompt_text,
            ctx=self._ctx(subject, attempt.pk),
            seed_key=f"reference:{subject.pk}:judge:{attempt.number}",
            threshold=settings.HILAPP_VIESCORE_THRESHOLD,
            strict=True,
        )

    def plan_retry(self, subject: FrameCharacter, failed: GateAttempt) -> Retry:
        report = failed.report or {}
        failure = (
            f"VIEScore {failed.score_overall} (needs > {settings.HILAPP_VIESCORE_THRESHOLD}); "
            f"SC {failed.score_sc}: {report.get('sc', {}).get('reasoning', '')} "
            f"PQ {failed.score_pq}: {report.get('pq', {}).get('reasoning', '')}"
        )
        answer = apt_rewrite(
            stage="reference",
            original_prompt=failed.prompt_text,
            failure_report=failure,
            image=read_bytes(failed.image),
            ctx=self._ctx(subject, failed.pk),
            seed_key=f"reference:{subject.pk}:apt:{failed.number}",
        )
        return Retry(
            action=AttemptAction.APT,
            prompt=RenderedPrompt(
                failed.prompt_name, failed.prompt_version, answer.rewritten_prompt
            ),
            diagnostic=answer.diagnostic,
        )

    def _iterations(self, subject: FrameCharacter) -> int:
        return attempts_of(self, subject.pk).filter(round=subject.round).count()

    def on_pass(self, subject: FrameCharacter, attempt: GateAttempt) -> None:
        moved = transition(
            FrameCharacter,
            subject.pk,
            field="reference_status",
            old=ReferenceStatus.EDITING,
            new=ReferenceStatus.APPROVED,
            reason=f"VIEScore {attempt.score_overall}",
            reference=attempt.image,
            reference_model=attempt.producer_model,
            iterations=self._iterations(subject),
            lease_until=None,
        )
        if moved:
            dispatch.frame_references([subject.frame_id])

    def _give_up(self, subject: FrameCharacter, reason: str) -> None:
        moved = transition(
            FrameCharacter,
            subject.pk,
            field="reference_status",
            old=ReferenceStatus.EDITING,
            new=ReferenceStatus.FAILED,
            reason=reason,
            iterations=self._iterations(subject),
            lease_until=None,
        )
        if moved:
            frame_hard_fail(
                frame_id=subject.frame_id,
                old=FrameStatus.REFERENCES,
                reason=f"reference of {subject.character.cid} ({subject.pid}, {subject.eid}): "
                f"{reason}",
            )

    def on_exhausted(self, subject: FrameCharacter, attempt: GateAttempt) -> None:
        self._give_up(
            subject,
            f"no VIEScore above {settings.HILAPP_VIESCORE_THRESHOLD} in "
            f"{self.max_attempts()} attempts (last {attempt.score_overall})",
        )

    def on_error(self, subject: FrameCharacter, attempt: GateAttempt, error: ProviderError) -> None:
        self._give_up(subject, f"provider error: {attempt.error or error}")


REFERENCE_GATE = ReferenceGate()


def frame_references_advance(*, frame_id: int) -> bool:
    """Start the frame's pending references; once all are approved, start the frame itself.

    Runs after the commit of each approved reference, so the last one to commit sees them all.
    """
    frame = Frame.objects.select_related("story__batch", "story__frames_batch").get(pk=frame_id)
    if frame.status != FrameStatus.REFERENCES or not batch_accepts_work(frame.story.phase3_batch):
        return False
    cast = frame_cast(frame)
    for fc in cast:
        if fc.reference_status != ReferenceStatus.PENDING:
            continue
        with transaction.atomic():
            if transition(
                FrameCharacter,
                fc.pk,
                field="reference_status",
                old=ReferenceStatus.PENDING,
                new=ReferenceStatus.EDITING,
                reason="reference sub-loop starts",
            ):
                attempt_open(
                    REFERENCE_GATE,
                    fc.pk,
                    number=_next_number(REFERENCE_GATE, fc.pk),
                    round_=fc.round,
                    plan=Retry(action=AttemptAction.INITIAL, prompt=reference_prompt(fc)),
                )
                dispatch.gate(AttemptKind.REFERENCE, fc.pk)
    if not all(fc.reference_status == ReferenceStatus.APPROVED for fc in cast):
        return False
    with transaction.atomic():
        moved = transition(
            Frame,
            frame.pk,
            old=FrameStatus.REFERENCES,
            new=FrameStatus.RENDERING,
            reason="every reference approved",
        )
        if moved:
            action = AttemptAction.INITIAL if frame.round == 1 else AttemptAction.HV3_REGENERATE
            attempt_open(
                FRAME_GATE,
                frame.pk,
                number=_next_number(FRAME_GATE, frame.pk),
                round_=frame.round,
                plan=Retry(action=action, prompt=frame_prompt(frame, cast)),
            )
            dispatch.gate(AttemptKind.FRAME, frame.pk)
    return moved


# --- the main loop -------------------------------------------------------------------------------


class FrameGate(GatePolicy):
    kind = AttemptKind.FRAME
    subject_field = "frame"

    def load(self, subject_id: int) -> Frame:
        return Frame.objects.select_related("story__batch", "story__frames_batch").get(
            pk=subject_id
        )

    def is_active(self, subject: Frame) -> bool:
        return subject.status == FrameStatus.RENDERING

    def max_attempts(self) -> int:
        return int(settings.HILAPP_FRAME_MAX_ATTEMPTS)

    def produce(self, subject: Frame, attempt: GateAttempt) -> Produced:
        cast = frame_cast(subject)
        ctx = frame_context(subject, attempt.pk)
        size = settings.HILAPP_FRAME_SIZE
        if attempt.action in EDIT_ACTIONS:
            role, images = Role.LOCAL_EDITOR, [read_bytes(attempt.source_image)]
        else:
            role, images = Role.FRAME_SYNTHESIZER, [read_bytes(fc.reference) for fc in cast]
        request = ImageRequest(
            role=role,
            prompt=_prompt_of(attempt),
            size=(size, size),
            seed_key=f"frame:{subject.pk}:{attempt.number}",
            subject=_sim_subject(subject, cast),
        )
        entry = select_entry(role, request, ctx)
        # gemini-2.5-flash-image takes at most 3 images: the rest go onto one contact sheet.
        request = dataclasses.replace(
            request, images=fit_inputs(images, max_input_images(role, ctx, entry))
        )
        result, call = call_image(request, ctx, entry=entry)
        return Produced(image=result.image, model_label=call.model_label)

    def judge(self, subject: Frame, attempt: GateAttempt) -> Judgement:
        cast = frame_cast(subject)
        return iqcc_judge(
            image=read_bytes(attempt.image),
            references=[read_bytes(fc.reference) for fc in cast],
            genre=subject.story.genre,
            frame_text=subject.frame_text,
            characters=_characters_context(cast),
            ctx=frame_context(subject, attempt.pk),
            seed_key=f"frame:{subject.pk}:iqcc:{attempt.number}",
        )

    def plan_retry(self, subject: Frame, failed: GateAttempt) -> Retry:
        report = failed.report or {}
        instruction = str(report.get("edit_instruction") or "").strip()
        if failed.error_scope == "local" and instruction:
            return Retry(
                action=AttemptAction.LIE,
                prompt=render_prompt("lie", instruction=instruction, frame_text=subject.frame_text),
                instruction=instruction,
                source_image=failed.image,
            )
        base = (
            attempts_of(self, subject.pk)
            .filter(action__in=SYNTHESIS_ACTIONS)
            .order_by("-number")
            .first()
        )
        prompt = _prompt_of(base) if base else frame_prompt(subject, frame_cast(subject))
        answer = apt_rewrite(
            stage="frame",
            original_prompt=prompt.text,
            failure_report=json.dumps(report, indent=1, sort_keys=True),
            image=read_bytes(failed.image),
            ctx=frame_context(subject, failed.pk),
            seed_key=f"frame:{subject.pk}:apt:{failed.number}",
        )
        return Retry(
            action=AttemptAction.APT,
            prompt=RenderedPrompt(prompt.name, prompt.version, answer.rewritten_prompt),
            diagnostic=answer.diagnostic,
        )

    def on_pass(self, subject: Frame, attempt: GateAttempt) -> None:
        edited_by_hv3 = (
            attempts_of(self, subject.pk)
            .filter(round=subject.round, action=AttemptAction.HV3_EDIT)
            .exists()
        )
        moved = transition(
            Frame,
            subject.pk,
            old=FrameStatus.RENDERING,
            new=FrameStatus.APPROVED,
            reason=f"IQCC passed attempt {attempt.number}",
            image=attempt.image,
            image_sha256=attempt.image_sha256,
            approval_path=ApprovalPath.HV3_EDIT if edited_by_hv3 else ApprovalPath.GATE,
            synthesizer_model=attempt.producer_model,
            arbitrator_model=attempt.judge_model,
            lease_until=None,
        )
        if moved:
            from synthesis.services.audit import frame_audit_maybe_open

            frame_audit_maybe_open(Frame.objects.get(pk=subject.pk))
            dispatch.story_check(subject.story_id)

    def on_exhausted(self, subject: Frame, attempt: GateAttempt) -> None:
        report = attempt.report or {}
        reasons = [
            r
            for key in ("identity_consistency", "control_accuracy", "semantic_alignment")
            for r in (report.get(key) or {}).get("reasons", [])
        ]
        frame_hard_fail(
            frame_id=subject.pk,
            old=FrameStatus.RENDERING,
            reason=f"{self.max_attempts()} consecutive failed attempts in round {subject.round}; "
            f"last: {attempt.error_scope} error ({', '.join(reasons) or 'no reasons given'})",
            arbitrator_model=attempt.judge_model,
        )

    def on_error(self, subject: Frame, attempt: GateAttempt, error: ProviderError) -> None:
        frame_hard_fail(
            frame_id=subject.pk,
            old=FrameStatus.RENDERING,
            reason=f"provider error: {attempt.error or error}",
        )


FRAME_GATE = FrameGate()


def frame_hard_fail(*, frame_id: int, old: str, reason: str, **updates: Any) -> bool:
    """Flag the frame as a hard failure and open its HV3 item (same transaction)."""
    with transaction.atomic():
        moved = transition(
            Frame,
            frame_id,
            old=old,
            new=FrameStatus.HARD_FAILED,
            reason=reason,
            lease_until=None,
            **updates,
        )
        if moved:
            frame = Frame.objects.select_related("story").get(pk=frame_id)
            review_item_open(
                stage="hv3",
                subject_id=frame_id,
                subject_label=f"Story {frame.story_id} frame {frame.index + 1}: "
                f"{frame.story.title}",
            )
    return moved


# --- HV3 -----------------------------------------------------------------------------------------


def frame_apply_hv3(
    *,
    frame_id: int,
    choice: str,
    image_name: str | None = None,
    instruction: str = "",
    reason: str = "",
) -> bool:
    """HV3's decision on a hard-failed frame (called once, inside the deciding transaction).

    ``regenerate``: a fresh round (new attempt budget) from the references (failed ones are
    edited again) or from the frame prompt. ``correct`` with ``image_name`` (an uploaded image,
    already validated): approved as human work. ``correct`` with ``instruction``: local image
    editing of the last frame image, then the IQCC gate again. ``discard``: discarded.
    """
    if choice not in HV3_CHOICES:
        raise ValueError(f"unknown HV3 choice {choice!r} (one of {', '.join(HV3_CHOICES)})")
    frame = (
        Frame.objects.select_related("story__batch", "story__frames_batch")
        .filter(pk=frame_id)
        .first()
    )
    if frame is None or frame.status != FrameStatus.HARD_FAILED:
        return False
    reason = reason or f"HV3 {choice}"
    with transaction.atomic():
        if choice == "discard":
            moved = transition(
                Frame,
                frame_id,
                old=FrameStatus.HARD_FAILED,
                new=FrameStatus.DISCARDED,
                reason=reason,
                actor="hv3",
            )
            if moved:
                dispatch.story_check(frame.story_id)
            return moved
        if choice == "correct" and image_name:
            moved = transition(
                Frame,
                frame_id,
                old=FrameStatus.HARD_FAILED,
                new=FrameStatus.APPROVED,
                reason=reason,
                actor="hv3",
                image=image_name,
                image_sha256=sha256_hex(read_bytes(image_name)),
                approval_path=ApprovalPath.HV3_UPLOAD,
                synthesizer_model="human (HV3)",
            )
            if moved:
                dispatch.story_check(frame.story_id)
            return moved
        cast = frame_cast(frame)
        source = attempts_of(FRAME_GATE, frame_id).exclude(image="").order_by("-number").first()
        if choice == "correct" and instruction.strip() and source is not None:
            return _frame_round_open(
                frame,
                reason,
                Retry(
                    action=AttemptAction.HV3_EDIT,
                    prompt=render_prompt(
                        "lie", instruction=instruction.strip(), frame_text=frame.frame_text
                    ),
                    instruction=instruction.strip(),
                    source_image=source.image,
                ),
            )
        # Regenerate (also a correction by instruction when no frame image exists to edit).
        if all(fc.reference_status == ReferenceStatus.APPROVED for fc in cast):
            return _frame_round_open(
                frame,
                reason,
                Retry(
                    action=AttemptAction.HV3_REGENERATE,
                    prompt=frame_prompt(frame, cast),
                    instruction=instruction.strip(),
                ),
            )
        return _references_restart(frame, cast, reason)


def _frame_round_open(frame: Frame, reason: str, plan: Retry) -> bool:
    moved = transition(
        Frame,
        frame.pk,
        old=FrameStatus.HARD_FAILED,
        new=FrameStatus.RENDERING,
        reason=reason,
        actor="hv3",
        round=F("round") + 1,
    )
    if moved:
        attempt_open(
            FRAME_GATE,
            frame.pk,
            number=_next_number(FRAME_GATE, frame.pk),
            round_=frame.round + 1,
            plan=plan,
        )
        dispatch.gate(AttemptKind.FRAME, frame.pk)
    return moved


def _references_restart(frame: Frame, cast: list[FrameCharacter], reason: str) -> bool:
    """Regeneration of a frame whose references failed: those get a fresh round and budget."""
    moved = transition(
        Frame,
        frame.pk,
        old=FrameStatus.HARD_FAILED,
        new=FrameStatus.REFERENCES,
        reason=reason,
        actor="hv3",
        round=F("round") + 1,
    )
    if not moved:
        return False
    for fc in cast:
        if fc.reference_status == ReferenceStatus.FAILED and transition(
            FrameCharacter,
            fc.pk,
            field="reference_status",
            old=ReferenceStatus.FAILED,
            new=ReferenceStatus.EDITING,
            reason=reason,
            actor="hv3",
            round=F("round") + 1,
        ):
            attempt_open(
                REFERENCE_GATE,
                fc.pk,
                number=_next_number(REFERENCE_GATE, fc.pk),
                round_=fc.round + 1,
                plan=Retry(action=AttemptAction.HV3_REGENERATE, prompt=reference_prompt(fc)),
            )
            dispatch.gate(AttemptKind.REFERENCE, fc.pk)
    dispatch.frame_references([frame.pk])
    return True


def frame_attempts_gapless(frame_id: int) -> bool:
    """Invariant check used by tests and the benchmark: attempt numbers are 1..n."""
    numbers = list(
        GateAttempt.objects.filter(frame_id=frame_id, kind=AttemptKind.FRAME)
        .order_by("number")
        .values_list("number", flat=True)
    )
    return numbers == list(range(1, len(numbers) + 1))


def produced_statuses() -> tuple[str, ...]:
    return (AttemptStatus.PRODUCED, AttemptStatus.PASSED, AttemptStatus.FAILED)
