"""Handlers and presenters that synthesis registers with the review app.

Decision handlers run inside the transaction that records the deciding vote (exactly once) and
call the synthesis services that apply HV1/HV2/HV3 outcomes. Presenters give the review pages
the template and context that show a character, a story script or a hard-failed frame; review
itself never imports synthesis.
"""

from __future__ import annotations

from typing import Any

from hilapp.media import media_url
from review.handlers import Decision, SubjectView, register_decision_handler, register_presenter
from review.stages import Choice, Stage
from synthesis.models import Character, Frame, Story
from synthesis.services.characters import character_apply_review
from synthesis.services.hv3 import frame_apply_hv3
from synthesis.services.stories import story_apply_review
from synthesis.states import AttemptStatus
from synthesis.vocabulary import UnknownControlId, load_vocabulary

# --- decisions ------------------------------------------------------------------------------------


def _reason(decision: Decision) -> str:
    head = f"{decision.stage.upper()} review item {decision.item_id}: {decision.choice}"
    return f"{head}\n{decision.comment_summary}" if decision.comment_summary else head


def apply_hv1(decision: Decision) -> None:
    character_apply_review(
        character_id=decision.subject_id,
        approved=decision.choice == Choice.APPROVE,
        reason=_reason(decision),
    )


def apply_hv2(decision: Decision) -> None:
    story_apply_review(
        story_id=decision.subject_id,
        approved=decision.choice == Choice.APPROVE,
        reason=_reason(decision),
    )


def apply_hv3(decision: Decision) -> None:
    frame_apply_hv3(
        frame_id=decision.subject_id,
        choice=decision.choice,
        image_name=decision.image_name,
        instruction=decision.instruction,
        reason=_reason(decision),
    )


# --- presenters -----------------------------------------------------------------------------------


def _chip(control_id: str) -> dict[str, str]:
    try:
        description = load_vocabulary().describe(control_id)
    except UnknownControlId:
        description = "not in the control vocabulary"
    return {"id": control_id, "description": description}


def _character_card(character: Any) -> dict[str, Any]:
    return {
        "cid": character.cid,
        "name": character.name or character.cid,
        "status": character.status,
        "template_url": media_url(character.template),
    }


def present_character(subject_id: int) -> SubjectView:
    character = Character.objects.filter(pk=subject_id).first()
    return SubjectView(
        "synthesis/review/hv1.html",
        {
            "character": character,
            "template_url": media_url(character.template) if character else "",
        },
    )


def present_story(subject_id: int) -> SubjectView:
    story = Story.objects.filter(pk=subject_id).first()
    if story is None:
        return SubjectView("synthesis/review/hv2.html", {"story": None})
    cast = [sc.character for sc in story.cast.select_related("character").order_by("order")]
    by_cid = {c.cid: _character_card(c) for c in cast}
    script = story.script or {}
    frames = [
        {
            "number": n,
            "text": frame.get("frame_text", ""),
            "characters": [
                {
                    "card": by_cid.get(ch.get("cid", ""), {"cid": ch.get("cid", "?"), "name": "?"}),
                    "pose": _chip(ch.get("pid", "")),
                    "expression": _chip(ch.get("eid", "")),
                    "composition": _chip(ch.get("ctag", "")),
                }
                for ch in frame.get("characters", [])
            ],
        }
        for n, frame in enumerate(script.get("frames", []), start=1)
    ]
    return SubjectView(
        "synthesis/review/hv2.html",
        {
            "story": story,
            "title": script.get("title") or story.title,
            "cast": list(by_cid.values()),
            "frames": frames,
        },
    )


def present_frame(subject_id: int) -> SubjectView:
    frame = Frame.objects.select_related("story").filter(pk=subject_id).first()
    if frame is None:
        return SubjectView("synthesis/review/hv3.html", {"frame": None})
    attempts = list(frame.attempts.order_by("id"))
    failed = [
        {
            "number": a.number,
            "round": a.round,
            "action": a.get_action_display(),
            "status": a.status,
            "image_url": media_url(a.image),
            "error_scope": a.error_scope,
            "report": a.report or {},
            "instruction": a.instruction,
            "diagnostic": a.diagnostic,
            "error": a.error,
        }
        for a in attempts
        if a.status in (AttemptStatus.FAILED, AttemptStatus.ERRORED)
    ]
    shown = next((a for a in reversed(attempts) if a.image), None)
    cast = [
        {
            "card": _character_card(fc.character),
            "reference_url": media_url(fc.reference),
            "pose": _chip(fc.pid),
            "expression": _chip(fc.eid),
            "composition": _chip(fc.ctag),
        }
        for fc in frame.cast.select_related("character").order_by("slot")
    ]
    return SubjectView(
        "synthesis/review/hv3.html",
        {
            "frame": frame,
            "image_url": media_url(frame.image or (shown.image if shown else "")),
            "cast": cast,
            "failed": failed,
        },
    )


register_decision_handler(Stage.HV1, apply_hv1)
register_decision_handler(Stage.HV2, apply_hv2)
register_decision_handler(Stage.HV3, apply_hv3)
register_presenter(Stage.HV1, present_character)
register_presenter(Stage.HV2, present_story)
register_presenter(Stage.HV3, present_frame)
