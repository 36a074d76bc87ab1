"""HV3: the human decision on a hard-failed frame, and the round it restarts.

A frame hard-fails when its main loop (``synthesis.services.frames``) or one of its references
(``synthesis.services.references``) spends its attempt budget; ``frame_apply_hv3`` applies the
reviewer's choice: regenerate with a fresh round, correct by upload or by instruction, discard.
"""

from __future__ import annotations

from django.db import transaction
from django.db.models import F

from hilapp.imaging import sha256_hex
from synthesis import dispatch
from synthesis.artifacts import read_bytes
from synthesis.gate import Retry, attempt_next_number, attempt_open, attempts_of, gate_send
from synthesis.models import Frame, FrameCharacter
from synthesis.prompts import render_prompt
from synthesis.services.frame_prompts import frame_prompt, reference_prompt
from synthesis.services.frames import FRAME_GATE, frame_cast
from synthesis.services.references import REFERENCE_GATE
from synthesis.states import ApprovalPath, AttemptAction, FrameStatus, ReferenceStatus
from synthesis.transitions import transition

HV3_CHOICES = ("correct", "regenerate", "discard")


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
            number=attempt_next_number(FRAME_GATE, frame.pk),
            round_=frame.round + 1,
            plan=plan,
        )
        gate_send(FRAME_GATE, frame.pk)
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
                number=attempt_next_number(REFERENCE_GATE, fc.pk),
                round_=fc.round + 1,
                plan=Retry(action=AttemptAction.HV3_REGENERATE, prompt=reference_prompt(fc)),
            )
            gate_send(REFERENCE_GATE, fc.pk)
    dispatch.frame_references([frame.pk])
    return True
