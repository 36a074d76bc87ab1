"""Judges shared by the gates: VIEScore for rendered and edited images, and APT.

VIEScore (Ku et al.) asks the judge separately for semantic consistency (SC) and perceptual
quality (PQ) sub-scores on 0..10; the overall score is sqrt(min(SC) * min(PQ)). Both questions go
to the same judge model so that one artifact is judged by one model.
"""

from __future__ import annotations

import math
from typing import Any

from synthesis.gate import Judgement
from synthesis.prompts import render_prompt
from synthesis.providers.base import Role, TextRequest
from synthesis.providers.calls import CallContext, call_text, select_entry
from synthesis.schemas import AptAnswer, ScoreAnswer


def viescore_overall(sc: float, pq: float) -> float:
    return math.sqrt(max(sc, 0.0) * max(pq, 0.0))


def viescore_first_key(seed_key: str) -> str:
    """The seed key of VIEScore's first question, which picks the judge of both (routing)."""
    return f"{seed_key}:sc"


def viescore_judge(
    *,
    mode: str,
    images: list[bytes],
    text: str,
    ctx: CallContext,
    seed_key: str,
    threshold: float,
    strict: bool,
) -> Judgement:
    """Score ``images[-1]`` (for ``mode="edit"``, ``images[0]`` is the source).

    ``strict``: the score must exceed the threshold (references); otherwise reach it (templates).
    """
    if mode not in ("t2i", "edit"):
        raise ValueError(f"unknown VIEScore mode {mode!r}")
    sc_prompt = (
        render_prompt("viescore_t2i_sc", prompt=text)
        if mode == "t2i"
        else render_prompt("viescore_edit_sc", instruction=text)
    )
    pq_prompt = render_prompt(f"viescore_{mode}_pq")
    sc_request = TextRequest(
        role=Role.JUDGE,
        prompt=sc_prompt,
        schema=ScoreAnswer,
        images=images,
        seed_key=viescore_first_key(seed_key),
    )
    entry = select_entry(Role.JUDGE, sc_request, ctx)
    sc_result, _ = call_text(sc_request, ctx, entry=entry)
    pq_request = TextRequest(
        role=Role.JUDGE,
        prompt=pq_prompt,
        schema=ScoreAnswer,
        images=images[-1:],
        seed_key=f"{seed_key}:pq",
    )
    pq_result, _ = call_text(pq_request, ctx, entry=entry)
    sc = _as_score(sc_result.data).minimum()
    pq = _as_score(pq_result.data).minimum()
    overall = round(viescore_overall(sc, pq), 3)
    passed = overall > threshold if strict else overall >= threshold
    return Judgement(
        passed=passed,
        judge_model=entry.label,
        score_sc=sc,
        score_pq=pq,
        score_overall=overall,
        report={
            "sc": _as_score(sc_result.data).model_dump(),
            "pq": _as_score(pq_result.data).model_dump(),
            "threshold": threshold,
        },
    )


def _as_score(data: Any) -> ScoreAnswer:
    assert isinstance(data, ScoreAnswer)
    return data


def apt_rewrite(
    *,
    stage: str,
    original_prompt: str,
    failure_report: str,
    image: bytes | None,
    ctx: CallContext,
    seed_key: str,
) -> AptAnswer:
    """Auto-Prompt Tuning: the judge diagnoses the failure and rewrites the prompt."""
    prompt = render_prompt(
        "apt", stage=stage, original_prompt=original_prompt, failure_report=failure_report
    )
    request = TextRequest(
        role=Role.JUDGE,
        prompt=prompt,
        schema=AptAnswer,
        images=[image] if image else [],
        seed_key=seed_key,
        subject={"original_prompt": original_prompt},
    )
    result, _ = call_text(request, ctx)
    assert isinstance(result.data, AptAnswer)
    return result.data
