"""Phase III main loop (``FRAME_GATE``), one policy of the one gate (``synthesis.gate``).

Per frame, once every reference is approved (``synthesis.services.references``): the frame
synthesizer renders from the frame prompt and the references; the IQCC arbitrator checks
identity, control accuracy and semantic alignment. A global error → APT and a full
regeneration; a local error → local image editing with the arbitrator's instruction; the attempt
budget spent → hard failure → HV3, whose decision ``synthesis.services.hv3`` applies.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Prefetch

from hilapp.imaging import fit_inputs
from review.services import review_item_open
from synthesis import dispatch
from synthesis.artifacts import read_bytes
from synthesis.gate import (
    GatePolicy,
    Judgement,
    Produced,
    Retry,
    attempt_prompt,
    attempts_of,
)
from synthesis.models import Frame, FrameCharacter, GateAttempt
from synthesis.prompts import RenderedPrompt, render_prompt
from synthesis.providers.base import ImageRequest, ProviderError, Role
from synthesis.providers.calls import (
    CallContext,
    PlannedCall,
    call_image,
    max_input_images,
    select_entry,
)
from synthesis.services.characters import figure_of
from synthesis.services.frame_prompts import characters_context, frame_prompt
from synthesis.services.gate_audit import frame_audit_maybe_open
from synthesis.services.iqcc import iqcc_judge
from synthesis.services.judging import apt_rewrite
from synthesis.states import (
    ApprovalPath,
    AttemptAction,
    AttemptKind,
    FrameStatus,
)
from synthesis.transitions import transition

SYNTHESIS_ACTIONS = (AttemptAction.INITIAL, AttemptAction.APT, AttemptAction.HV3_REGENERATE)
EDIT_ACTIONS = (AttemptAction.LIE, AttemptAction.HV3_EDIT)


def frame_context(frame: Frame, attempt_id: int | None = None, subject: str = "") -> CallContext:
    return CallContext.for_batch(
        frame.story.phase3_batch, subject=subject or f"frame:{frame.pk}", attempt_id=attempt_id
    )


def _cast_query() -> Any:
    return FrameCharacter.objects.select_related("character").order_by("slot")


def frame_cast(frame: Frame) -> list[FrameCharacter]:
    """The frame's characters in slot order: as ``FrameGate.load`` prefetched them (the cast
    does not change while the frame renders, and a run reads it at every step), else now."""
    prefetched: list[FrameCharacter] | None = getattr(frame, "cast_in_order", None)
    if prefetched is not None:
        return prefetched
    return frame_cast_of(frame.pk)


def frame_cast_of(frame_id: int) -> list[FrameCharacter]:
    """The cast of a frame that is not loaded, in slot order."""
    return list(_cast_query().filter(frame_id=frame_id))


def _sim_subject(frame: Frame, cast: list[FrameCharacter]) -> dict[str, Any]:
    """What the simulator draws (real providers read the prompt and the images)."""
    return {
        "figures": [figure_of(fc.character, pose_id=fc.pid, expression_id=fc.eid) for fc in cast],
        "frame_text": frame.frame_text,
        "composition_ids": sorted({fc.ctag for fc in cast}),
    }


def _local_instruction(failed: GateAttempt) -> str:
    """The arbitrator's edit instruction when the error was local (then LIE, not APT)."""
    instruction = str((failed.report or {}).get("edit_instruction") or "").strip()
    return instruction if failed.error_scope == "local" else ""


class FrameGate(GatePolicy):
    kind = AttemptKind.FRAME
    subject_field = "frame"

    def load(self, subject_id: int) -> Frame:
        return (
            Frame.objects.select_related("story__batch", "story__frames_batch")
            .prefetch_related(Prefetch("cast", queryset=_cast_query(), to_attr="cast_in_order"))
            .get(pk=subject_id)
        )

    def is_active(self, subject: Frame) -> bool:
        return subject.status == FrameStatus.RENDERING

    def max_attempts(self) -> int:
        return int(settings.HILAPP_FRAME_MAX_ATTEMPTS)

    def produce_call(self, subject: Frame, attempt: GateAttempt) -> PlannedCall:
        role = Role.LOCAL_EDITOR if attempt.action in EDIT_ACTIONS else Role.FRAME_SYNTHESIZER
        return PlannedCall(
            role, f"frame:{subject.pk}:{attempt.number}", frame_context(subject, attempt.pk)
        )

    def judge_call(self, subject: Frame, attempt: GateAttempt) -> PlannedCall:
        return PlannedCall(
            Role.ARBITRATOR,
            f"frame:{subject.pk}:iqcc:{attempt.number}",
            frame_context(subject, attempt.pk),
        )

    def retry_call(self, subject: Frame, failed: GateAttempt) -> PlannedCall | None:
        if _local_instruction(failed):
            return None  # local image editing is planned from the arbitrator's instruction
        return PlannedCall(
            Role.JUDGE, f"frame:{subject.pk}:apt:{failed.number}", frame_context(subject, failed.pk)
        )

    def produce(self, subject: Frame, attempt: GateAttempt) -> Produced:
        cast = frame_cast(subject)
        planned = self.produce_call(subject, attempt)
        ctx, role = planned.ctx, planned.role
        size = settings.HILAPP_FRAME_SIZE
        if role == Role.LOCAL_EDITOR:
            images = [read_bytes(attempt.source_image)]
        else:
            images = [read_bytes(fc.reference) for fc in cast]
        request = ImageRequest(
            role=role,
            prompt=attempt_prompt(attempt),
            size=(size, size),
            seed_key=planned.seed_key,
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
            characters=characters_context(cast),
            ctx=frame_context(subject, attempt.pk),
            seed_key=self.judge_call(subject, attempt).seed_key,
        )

    def plan_retry(self, subject: Frame, failed: GateAttempt) -> Retry:
        report = failed.report or {}
        instruction = _local_instruction(failed)
        if instruction:
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
        prompt = attempt_prompt(base) if base else frame_prompt(subject, frame_cast(subject))
        answer = apt_rewrite(
            stage="frame",
            original_prompt=prompt.text,
            failure_report=json.dumps(report, indent=1, sort_keys=True),
            image=read_bytes(failed.image),
            ctx=frame_context(subject, failed.pk),
            seed_key=f"frame:{subject.pk}:apt:{failed.number}",  # = retry_call's key
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
