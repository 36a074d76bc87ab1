"""What other apps plug into review: decision handlers and subject presenters.

``review`` never imports the apps whose subjects it reviews. ``synthesis`` registers, in its
``AppConfig.ready()``, one decision handler and one presenter per stage:

- a decision handler ``fn(decision: Decision) -> None`` runs inside the transaction that records
  the deciding vote, so it is applied exactly once (if it raises, the vote is not recorded
  either). Handlers only write to the database and enqueue work with ``transaction.on_commit``;
- a presenter ``fn(subject_id) -> SubjectView`` names the template and context that show the
  subject on a review page.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from review.stages import Stage

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Decision:
    item_id: int
    stage: str
    subject_id: int
    choice: str
    comment_summary: str
    # HV3 "correct": the storage name of the chosen corrected frame (None when an instruction).
    image_name: str | None
    instruction: str


@dataclass(frozen=True)
class SubjectView:
    template: str
    context: dict[str, Any] = field(default_factory=dict)


DecisionHandler = Callable[[Decision], None]
Presenter = Callable[[int], SubjectView]

_decision_handlers: dict[str, DecisionHandler] = {}
_presenters: dict[str, Presenter] = {}

FALLBACK_TEMPLATE = "review/subject_fallback.html"


def _check_stage(stage: str) -> None:
    if stage not in Stage.values:
        raise ValueError(f"Unknown review stage {stage!r}; expected one of {Stage.values}")


def register_decision_handler(stage: str, fn: DecisionHandler) -> None:
    """Make ``fn`` the handler of ``stage``'s decisions (one per stage; a later one replaces)."""
    _check_stage(stage)
    previous = _decision_handlers.get(stage)
    if previous is not None and previous is not fn:
        logger.info("review: decision handler for %s replaced by %r", stage, fn)
    _decision_handlers[stage] = fn


def register_presenter(stage: str, fn: Presenter) -> None:
    _check_stage(stage)
    _presenters[stage] = fn


def presenter(stage: str) -> Presenter | None:
    return _presenters.get(stage)


def apply_decision(decision: Decision) -> None:
    """Run the stage's handler (inside the caller's transaction)."""
    fn = _decision_handlers.get(decision.stage)
    if fn is None:
        logger.warning(
            "review: no decision handler for stage %s; item %s decided %s but nothing applied it",
            decision.stage,
            decision.item_id,
            decision.choice,
        )
        return
    fn(decision)


def present_subject(stage: str, subject_id: int, label: str = "") -> SubjectView:
    fn = _presenters.get(stage)
    if fn is None:
        return SubjectView(FALLBACK_TEMPLATE, {"subject_id": subject_id, "label": label})
    return fn(subject_id)
