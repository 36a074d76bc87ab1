"""Provenance of a frame: its whole history, read from the database (a selector, no writes).

Prompts (template name + version), every attempt of its references and of the frame itself with
its image, verdict, scores or IQCC report, edits, models and the ledger's calls and costs; the
status changes; the HV2 decision on its story and the HV3 items with their votes.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.db.models import Sum

from hilapp.media import media_url
from synthesis.models import Frame, GateAttempt, ModelCall, StatusChange


def _calls(attempt: GateAttempt) -> list[dict[str, Any]]:
    return [
        {
            "role": c.role,
            "model": c.model_label,
            "prompt": c.prompt_name,
            "prompt_version": c.prompt_version,
            "status": c.status,
            "try": c.try_number,
            "cost_usd": c.cost_usd,
            "latency_ms": c.latency_ms,
            "error": c.error,
            "images_in": c.images_in,
            "tokens_in": c.tokens_in,
            "tokens_out": c.tokens_out,
        }
        for c in attempt.calls.order_by("id")
    ]


def _attempt(attempt: GateAttempt) -> dict[str, Any]:
    calls = _calls(attempt)
    return {
        "id": attempt.pk,
        "number": attempt.number,
        "round": attempt.round,
        "action": attempt.action,
        "action_label": attempt.get_action_display(),
        "status": attempt.status,
        "prompt_name": attempt.prompt_name,
        "prompt_version": attempt.prompt_version,
        "prompt_text": attempt.prompt_text,
        "instruction": attempt.instruction,
        "diagnostic": attempt.diagnostic,
        "source_image": attempt.source_image,
        "source_url": media_url(attempt.source_image),
        "image": attempt.image,
        "image_url": media_url(attempt.image),
        "image_sha256": attempt.image_sha256,
        "producer_model": attempt.producer_model,
        "judge_model": attempt.judge_model,
        "score_sc": attempt.score_sc,
        "score_pq": attempt.score_pq,
        "score_overall": attempt.score_overall,
        "error_scope": attempt.error_scope,
        "report": attempt.report or {},
        "error": attempt.error,
        "calls": calls,
        "cost_usd": sum((c["cost_usd"] for c in calls), Decimal(0)),
    }


def _changes(model: str, object_id: int) -> list[dict[str, Any]]:
    return [
        {"old": s.old, "new": s.new, "reason": s.reason, "actor": s.actor, "at": s.at}
        for s in StatusChange.objects.filter(model=model, object_id=object_id).order_by("id")
    ]


def _reviews(stage: str, subject_id: int) -> list[dict[str, Any]]:
    from review.models import ReviewItem

    items = []
    for item in ReviewItem.objects.filter(stage=stage, subject_id=subject_id).order_by("id"):
        items.append(
            {
                "id": item.pk,
                "stage": stage,
                "status": item.status,
                "decided_choice": item.decided_choice,
                "decided_at": item.decided_at,
                "votes": [
                    {
                        "expert": v.expert.get_username(),
                        "choice": v.choice,
                        "comment": v.comment,
                        "instruction": v.instruction,
                        "image_url": media_url(v.image_name),
                        "at": v.created_at,
                    }
                    for v in item.votes.select_related("expert").order_by("id")
                ],
            }
        )
    return items


def frame_provenance(*, frame_id: int) -> dict[str, Any]:
    """Everything that led to this frame, oldest first. Raises ``Frame.DoesNotExist``."""
    frame = Frame.objects.select_related("story__batch").get(pk=frame_id)
    story = frame.story
    references: list[dict[str, Any]] = []
    for fc in frame.cast.select_related("character").order_by("slot"):
        attempts = [_attempt(a) for a in fc.attempts.order_by("number")]
        references.append(
            {
                "id": fc.pk,
                "cid": fc.character.cid,
                "name": fc.character.name,
                "template_url": media_url(fc.character.template),
                "pid": fc.pid,
                "eid": fc.eid,
                "ctag": fc.ctag,
                "status": fc.reference_status,
                "round": fc.round,
                "iterations": fc.iterations,
                "reference_url": media_url(fc.reference),
                "model": fc.reference_model,
                "attempts": attempts,
                "changes": _changes("framecharacter", fc.pk),
            }
        )
    attempts = [_attempt(a) for a in frame.attempts.order_by("number")]
    attempt_ids = [r_a["id"] for r in references for r_a in r["attempts"]] + [
        a["id"] for a in attempts
    ]
    calls = ModelCall.objects.filter(attempt_id__in=attempt_ids)
    script_calls = ModelCall.objects.filter(subject=f"story:{story.pk}")
    cost = calls.aggregate(t=Sum("cost_usd"))["t"] or Decimal(0)
    return {
        "frame": {
            "id": frame.pk,
            "index": frame.index,
            "number": frame.index + 1,
            "text": frame.frame_text,
            "status": frame.status,
            "round": frame.round,
            "approval_path": frame.approval_path,
            "image_url": media_url(frame.image),
            "image_sha256": frame.image_sha256,
            "synthesizer_model": frame.synthesizer_model,
            "arbitrator_model": frame.arbitrator_model,
            "reason": frame.reason,
        },
        "story": {
            "id": story.pk,
            "title": story.title,
            "genre": story.genre,
            "status": story.status,
            "batch_id": story.batch_id,
            "planner_model": story.planner_model,
            "repairs": story.repairs,
            "script_calls": [
                {
                    "prompt": c.prompt_name,
                    "prompt_version": c.prompt_version,
                    "model": c.model_label,
                    "status": c.status,
                    "cost_usd": c.cost_usd,
                }
                for c in script_calls.order_by("id")
            ],
        },
        "references": references,
        "attempts": attempts,
        "changes": _changes("frame", frame.pk),
        "reviews": _reviews("hv2", story.pk) + _reviews("hv3", frame.pk),
        "cost_usd": cost,
        "calls": calls.count(),
    }
