"""Phase III reference sub-loop (``REFERENCE_GATE``), one policy of the gate (``synthesis.gate``).

Per (frame, character): the reference editor turns the CID template into R_ij with the frame's
pose and expression; VIEScore-edit must exceed the threshold, otherwise Auto-Prompt Tuning
rewrites the prompt and the edit runs again (bounded). A reference that never passes hard-fails
its frame. Once all of a frame's references are approved, ``frame_references_advance`` starts
the frame's main loop (``synthesis.services.frames``).
"""

from __future__ import annotations

from django.conf import settings
from django.db import transaction

from synthesis import dispatch
from synthesis.artifacts import read_bytes
from synthesis.gate import (
    GatePolicy,
    Judgement,
    Produced,
    Retry,
    attempt_next_number,
    attempt_prompt,
    attempts_of,
    gate_start,
)
from synthesis.models import Frame, FrameCharacter, GateAttempt
from synthesis.prompts import RenderedPrompt
from synthesis.providers.base import ImageRequest, ProviderError, Role
from synthesis.providers.calls import CallContext, PlannedCall, call_image
from synthesis.services.batches import batch_accepts_work
from synthesis.services.characters import figure_of
from synthesis.services.frame_prompts import frame_prompt, reference_prompt
from synthesis.services.frames import FRAME_GATE, frame_cast_of, frame_context, frame_hard_fail
from synthesis.services.judging import apt_rewrite, viescore_first_key, viescore_judge
from synthesis.states import AttemptAction, AttemptKind, FrameStatus, ReferenceStatus
from synthesis.transitions import transition


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

    def produce_call(self, subject: FrameCharacter, attempt: GateAttempt) -> PlannedCall:
        return PlannedCall(
            Role.REFERENCE_EDITOR,
            f"reference:{subject.pk}:{attempt.number}",
            self._ctx(subject, attempt.pk),
        )

    def judge_call(self, subject: FrameCharacter, attempt: GateAttempt) -> PlannedCall:
        return PlannedCall(
            Role.JUDGE,
            viescore_first_key(f"reference:{subject.pk}:judge:{attempt.number}"),
            self._ctx(subject, attempt.pk),
        )

    def retry_call(self, subject: FrameCharacter, failed: GateAttempt) -> PlannedCall:
        return PlannedCall(
            Role.JUDGE, f"reference:{subject.pk}:apt:{failed.number}", self._ctx(subject, failed.pk)
        )

    def produce(self, subject: FrameCharacter, attempt: GateAttempt) -> Produced:
        size = settings.HILAPP_TEMPLATE_SIZE
        request = ImageRequest(
            role=Role.REFERENCE_EDITOR,
            prompt=attempt_prompt(attempt),
            images=[read_bytes(subject.character.template)],
            size=(size, size),
            seed_key=self.produce_call(subject, attempt).seed_key,
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
            seed_key=self.retry_call(subject, failed).seed_key,
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


def _waiting_on_references(cast: list[FrameCharacter]) -> bool:
    """True while references are being edited and none is left to start: the approval of the
    last one advances the frame, so every approval before it has nothing to do."""
    statuses = {fc.reference_status for fc in cast}
    return ReferenceStatus.PENDING not in statuses and bool(statuses - {ReferenceStatus.APPROVED})


def frame_references_advance(*, frame_id: int) -> bool:
    """Start the frame's pending references; once all are approved, start the frame itself.

    Runs after the commit of each approved reference, so the last one to commit sees them all.
    The cast is read first: an approval before the last costs that one query.
    """
    cast = frame_cast_of(frame_id)
    if _waiting_on_references(cast):
        return False
    frame = Frame.objects.select_related("story__batch", "story__frames_batch").get(pk=frame_id)
    if frame.status != FrameStatus.REFERENCES or not batch_accepts_work(frame.story.phase3_batch):
        return False
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
                fc.frame = frame  # loaded with its story and batches: no lazy loads below
                gate_start(
                    REFERENCE_GATE,
                    fc,
                    number=attempt_next_number(REFERENCE_GATE, fc.pk),
                    round_=fc.round,
                    plan=Retry(action=AttemptAction.INITIAL, prompt=reference_prompt(fc)),
                )
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
            gate_start(
                FRAME_GATE,
                frame,
                number=attempt_next_number(FRAME_GATE, frame.pk),
                round_=frame.round,
                plan=Retry(action=action, prompt=frame_prompt(frame, cast)),
            )
    return moved
