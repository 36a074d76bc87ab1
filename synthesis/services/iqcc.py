"""IQCC: the arbitrator's triple check of a frame (identity, control accuracy, semantics).

The answer is JSON validated against ``schemas.IqccReport``; an answer that does not validate is
a failed call (the gate errors the attempt after the parse retries), never a verdict.
"""

from __future__ import annotations

from typing import Any

from synthesis.gate import Judgement
from synthesis.prompts import render_prompt
from synthesis.providers.base import Role, TextRequest
from synthesis.providers.calls import CallContext, call_text
from synthesis.schemas import ErrorScope, IqccReport


def iqcc_judge(
    *,
    image: bytes,
    references: list[bytes],
    genre: str,
    frame_text: str,
    characters: list[dict[str, Any]],
    ctx: CallContext,
    seed_key: str,
) -> Judgement:
    """Judge the frame ``image`` against its references; the verdict and the error scope.

    A report whose checks disagree with its scope (a failed check with scope "none") is taken as
    a global error: the frame is regenerated rather than passed.
    """
    prompt = render_prompt("iqcc", genre=genre, frame_text=frame_text, characters=characters)
    request = TextRequest(
        role=Role.ARBITRATOR,
        prompt=prompt,
        schema=IqccReport,
        images=[image, *references],
        seed_key=seed_key,
    )
    result, call = call_text(request, ctx)
    report = result.data
    assert isinstance(report, IqccReport)
    scope = report.error_scope
    if not report.passed and scope == ErrorScope.NONE:
        scope = ErrorScope.GLOBAL
    return Judgement(
        passed=report.passed,
        judge_model=call.model_label,
        error_scope="" if report.passed else scope.value,
        report=report.model_dump(mode="json"),
    )
