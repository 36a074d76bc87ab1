"""Pydantic schemas of every structured model answer.

Text models must answer with JSON that validates against one of these; an answer that does not
is a failed call (``ErrorKind.MALFORMED``), never a made-up value.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CharacterConcept(_Strict):
    """Phase I planner answer (Character Meta Prompt)."""

    name: str = Field(min_length=1, max_length=80)
    visual_description: str = Field(min_length=10, max_length=2000)
    personality: str = Field(default="", max_length=500)
    palette: list[str] = Field(
        min_length=2, max_length=5, description="main colours as #rrggbb hex codes"
    )


class ScoreAnswer(_Strict):
    """A VIEScore judge answer: sub-scores on 0..10 and the reasoning behind them.

    Semantic consistency (SC) and perceptual quality (PQ) are asked separately; the overall score
    is sqrt(min(SC) * min(PQ)) as in VIEScore.
    """

    score: list[float] = Field(min_length=1, max_length=4)
    reasoning: str = ""

    def minimum(self) -> float:
        return min(max(0.0, min(s, 10.0)) for s in self.score)


class AptAnswer(_Strict):
    """Auto-Prompt Tuning: a diagnostic of the failure and a rewritten prompt."""

    diagnostic: str = Field(min_length=1)
    rewritten_prompt: str = Field(min_length=1)


class ScriptCharacter(_Strict):
    cid: str
    pid: str
    eid: str
    ctag: str


class ScriptFrame(_Strict):
    frame_text: str = Field(min_length=1)
    characters: list[ScriptCharacter] = Field(min_length=1)


class StoryScript(_Strict):
    """Phase II planner answer (Story Meta Prompt): the structured story script."""

    title: str = Field(min_length=1, max_length=200)
    frames: list[ScriptFrame]


class Verdict(StrEnum):
    PASS = "pass"
    FAIL = "fail"


class ErrorScope(StrEnum):
    NONE = "none"
    GLOBAL = "global"  # identity, semantics, composition/viewpoint -> APT + full regeneration
    LOCAL = "local"  # control accuracy, small object/colour faults -> local image editing


class CheckResult(_Strict):
    verdict: Verdict
    reasons: list[str] = Field(default_factory=list)


class IqccReport(_Strict):
    """The IQCC arbitrator's triple check of a frame."""

    identity_consistency: CheckResult
    control_accuracy: CheckResult
    semantic_alignment: CheckResult
    error_scope: ErrorScope
    edit_instruction: str = ""

    @property
    def passed(self) -> bool:
        return self.error_scope == ErrorScope.NONE and all(
            c.verdict == Verdict.PASS
            for c in (self.identity_consistency, self.control_accuracy, self.semantic_alignment)
        )
