"""The prompts of Phase III: the reference edit of one character, and the frame synthesis.

Both describe controls (pose, expression, composition) by their vocabulary entry; the frame
prompt numbers each character by its reference image, in the cast's slot order.
"""

from __future__ import annotations

from typing import Any

from synthesis.models import Frame, FrameCharacter
from synthesis.prompts import RenderedPrompt, render_prompt
from synthesis.vocabulary import load_vocabulary


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


def characters_context(cast: list[FrameCharacter]) -> list[dict[str, Any]]:
    """The cast as the frame prompt and the IQCC arbitrator see it."""
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
        characters=characters_context(cast),
    )
