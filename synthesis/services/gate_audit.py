"""Gate audit: a sampled share of gate-approved frames also goes to experts.

``HILAPP_AUDIT_RATE`` of the frames the IQCC gate approves get ``audit=pending`` and an
``audit`` review item (approve = the gate was right, reject = a false accept). A frame is
withheld from export while its audit is pending, and after a rejection. The statistics turn the
decided audits into the gate's false-accept rate with a Wilson confidence interval.

Sampling is a deterministic hash of the frame id, so re-running a step never re-draws it.
"""

from __future__ import annotations

import hashlib
import math

from django.conf import settings
from django.db import transaction

from hilapp.media import media_url
from review.handlers import Decision, SubjectView, register_decision_handler, register_presenter
from review.stages import Choice, Stage
from synthesis.models import Frame, StatusChange
from synthesis.states import ApprovalPath, AuditStatus, FrameStatus


def audit_sampled(frame_id: int, rate: float | None = None) -> bool:
    """Is this frame in the audit sample? (A stable draw in [0, 1) per frame id.)"""
    rate = settings.HILAPP_AUDIT_RATE if rate is None else rate
    if rate <= 0:
        return False
    digest = hashlib.sha256(f"hilapp-audit|{frame_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < rate


def _audit_move(frame_id: int, *, old: str, new: str, reason: str, actor: str) -> bool:
    """Guarded write of the audit field with its audit row (``frame_audit`` in StatusChange)."""
    with transaction.atomic():
        changed = Frame.objects.filter(pk=frame_id, audit=old).update(audit=new)
        if changed:
            StatusChange.objects.create(
                model="frame_audit",
                object_id=frame_id,
                old=old or "none",
                new=new,
                reason=reason[:2000],
                actor=actor[:64],
            )
    return bool(changed)


def frame_audit_maybe_open(frame: Frame, *, rate: float | None = None) -> bool:
    """Call when a frame passes the gate: maybe send it to the audit stage. True if sent."""
    if frame.status != FrameStatus.APPROVED or frame.approval_path != ApprovalPath.GATE:
        return False
    if not audit_sampled(frame.pk, rate):
        return False
    from review.services import review_item_open

    with transaction.atomic():
        if not _audit_move(
            frame.pk,
            old=AuditStatus.NONE,
            new=AuditStatus.PENDING,
            reason="sampled for the gate audit",
            actor="audit",
        ):
            return False
        review_item_open(
            stage=Stage.AUDIT,
            subject_id=frame.pk,
            subject_label=f"frame {frame.story_id}/{frame.index + 1}",
        )
    return True


def frame_apply_audit(*, frame_id: int, approved: bool, reason: str = "") -> bool:
    """The audit's decision: the gate was right (confirmed) or it accepted a bad frame."""
    new = AuditStatus.CONFIRMED if approved else AuditStatus.REJECTED
    return _audit_move(
        frame_id,
        old=AuditStatus.PENDING,
        new=new,
        reason=reason or f"audit {'approved' if approved else 'rejected'}",
        actor="audit",
    )


def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float] | None:
    """The Wilson score interval of a proportion (95% by default); None without data."""
    if n <= 0:
        return None
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


# --- review hooks ---------------------------------------------------------------------------------


def apply_audit(decision: Decision) -> None:
    head = f"AUDIT review item {decision.item_id}: {decision.choice}"
    frame_apply_audit(
        frame_id=decision.subject_id,
        approved=decision.choice == Choice.APPROVE,
        reason=f"{head}\n{decision.comment_summary}" if decision.comment_summary else head,
    )


def present_audit(subject_id: int) -> SubjectView:
    frame = Frame.objects.select_related("story").filter(pk=subject_id).first()
    cast = []
    if frame is not None:
        cast = [
            {
                "name": fc.character.name or fc.character.cid,
                "cid": fc.character.cid,
                "template_url": media_url(fc.character.template),
                "reference_url": media_url(fc.reference),
                "pid": fc.pid,
                "eid": fc.eid,
                "ctag": fc.ctag,
            }
            for fc in frame.cast.select_related("character").order_by("slot")
        ]
    return SubjectView(
        "synthesis/audit_frame.html",
        {"frame": frame, "image_url": media_url(frame.image) if frame else "", "cast": cast},
    )


def register() -> None:
    register_decision_handler(Stage.AUDIT, apply_audit)
    register_presenter(Stage.AUDIT, present_audit)


register()
