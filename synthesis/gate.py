"""The one gate-and-retry mechanism behind the three loops (character, reference, frame).

A subject in its gate state owns a chain of ``GateAttempt`` rows. Each step of the chain is one
guarded transition, so a step can be retried, repeated or resumed after a crash without doing
its work twice:

    pending --produce--> produced --judge--> passed  → policy.on_pass
                                        └--> failed  → retry (policy.plan_retry: APT, LIE, …)
                                                       or, budget spent, policy.on_exhausted

A worker claims an attempt with a lease before calling a model, so two deliveries of the same
message never pay for the same step twice; a lease left by a dead worker expires and the
reconciler sends the subject round again. A run that produces an attempt and judges it too
keeps the lease from the one step to the next instead of claiming it twice.

Each step runs on the queue of the provider its model call uses (``gate_queue``): a worker
that finds the next step belongs to another queue sends the subject there and stops, so a GPU
worker renders and an API worker judges the same attempt, each without waiting on the other.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, ClassVar

from django.conf import settings
from django.db import IntegrityError, connection, models, transaction
from django.db.models import Max, Q
from django.utils import timezone

from hilapp.media import StorageUnavailable
from synthesis import dispatch
from synthesis.models import GateAttempt
from synthesis.prompts import RenderedPrompt
from synthesis.providers.base import ErrorKind, ProviderError
from synthesis.providers.calls import PlannedCall, queue_of
from synthesis.states import AttemptAction, AttemptKind, AttemptStatus
from synthesis.transitions import transition

log = logging.getLogger(__name__)


class Step(StrEnum):
    CONTINUE = "continue"  # there is a next step to take now
    DONE = "done"  # the subject left its gate state
    BUSY = "busy"  # another worker holds the step; the reconciler will look again
    MOVED = "moved"  # the next step belongs to another queue; the subject was sent there


@dataclass
class Produced:
    image: bytes
    model_label: str


@dataclass
class Judgement:
    passed: bool
    judge_model: str
    score_sc: float | None = None
    score_pq: float | None = None
    score_overall: float | None = None
    error_scope: str = ""
    report: dict[str, Any] = field(default_factory=dict)


@dataclass
class Retry:
    action: AttemptAction
    prompt: RenderedPrompt
    instruction: str = ""
    diagnostic: str = ""
    source_image: str = ""


class GatePolicy(ABC):
    """What differs between the three loops; the mechanism in this module is shared."""

    kind: ClassVar[AttemptKind]
    subject_field: ClassVar[str]  # the GateAttempt foreign key naming the subject

    @abstractmethod
    def load(self, subject_id: int) -> models.Model: ...

    @abstractmethod
    def is_active(self, subject: Any) -> bool:
        """Is the subject still in the state this gate works on?"""

    @abstractmethod
    def max_attempts(self) -> int:
        """Consecutive failed attempts allowed in one round before the subject is exhausted."""

    @abstractmethod
    def produce(self, subject: Any, attempt: GateAttempt) -> Produced: ...

    @abstractmethod
    def judge(self, subject: Any, attempt: GateAttempt) -> Judgement: ...

    @abstractmethod
    def plan_retry(self, subject: Any, failed: GateAttempt) -> Retry: ...

    @abstractmethod
    def on_pass(self, subject: Any, attempt: GateAttempt) -> None:
        """Called inside the transaction that records nothing else; must be a guarded write."""

    @abstractmethod
    def on_exhausted(self, subject: Any, attempt: GateAttempt) -> None: ...

    @abstractmethod
    def on_error(self, subject: Any, attempt: GateAttempt, error: ProviderError) -> None:
        """A provider failed permanently (or its answer never parsed) on this attempt."""

    # The first model call of each step, for routing; ``produce``/``judge``/``plan_retry``
    # make exactly these calls (same role and seed key).
    @abstractmethod
    def produce_call(self, subject: Any, attempt: GateAttempt) -> PlannedCall: ...

    @abstractmethod
    def judge_call(self, subject: Any, attempt: GateAttempt) -> PlannedCall: ...

    @abstractmethod
    def retry_call(self, subject: Any, failed: GateAttempt) -> PlannedCall | None:
        """The call ``plan_retry`` makes (None: the retry is planned without a model)."""

    def save_image(self, data: bytes) -> tuple[str, str]:
        from synthesis.artifacts import save_png

        return save_png(data, folder=self.kind.value)

    def round_of(self, subject: Any) -> int:
        return int(getattr(subject, "round", 1))


def attempts_of(policy: GatePolicy, subject_id: int) -> models.QuerySet[GateAttempt]:
    return GateAttempt.objects.filter(
        kind=policy.kind, **{f"{policy.subject_field}_id": subject_id}
    )


def attempt_prompt(attempt: GateAttempt) -> RenderedPrompt:
    """The prompt an attempt was opened with."""
    return RenderedPrompt(attempt.prompt_name, attempt.prompt_version, attempt.prompt_text)


def attempt_next_number(policy: GatePolicy, subject_id: int) -> int:
    """The number after the subject's last attempt in any round (attempt numbers never reset)."""
    last = attempts_of(policy, subject_id).aggregate(n=Max("number"))["n"]
    return int(last or 0) + 1


def attempt_open(
    policy: GatePolicy, subject_id: int, *, number: int, round_: int, plan: Retry
) -> GateAttempt | None:
    """Create attempt ``number``; None if a racer created it first (unique constraint)."""
    try:
        # Inside a transaction a savepoint keeps it usable when the racer's row makes the
        # INSERT fail; in autocommit the INSERT is its own transaction (no BEGIN, no COMMIT).
        with transaction.atomic() if connection.in_atomic_block else nullcontext():
            return GateAttempt.objects.create(
                kind=policy.kind,
                number=number,
                round=round_,
                action=plan.action,
                prompt_name=plan.prompt.name,
                prompt_version=plan.prompt.version,
                prompt_text=plan.prompt.text,
                instruction=plan.instruction,
                diagnostic=plan.diagnostic,
                source_image=plan.source_image,
                **{f"{policy.subject_field}_id": subject_id},
            )
    except IntegrityError:
        return None


def gate_run(
    policy: GatePolicy, subject_id: int, *, here: str | None = None, max_steps: int = 50
) -> Step:
    """Take steps until the subject leaves the gate, another worker holds it, the next step
    belongs to another queue than ``here`` (None: run every step here), or a provider error
    escapes (transient errors propagate to the task, which retries with back-off)."""
    step = Step.CONTINUE
    # The subject is loaded once per run: only this gate's own steps change it while it is in
    # the gate, and they end the run when they do (a racer's are guarded transitions). The
    # latest attempt is loaded once too: a step that moves it (or opens the next) hands it on.
    subject = policy.load(subject_id)
    attempt: GateAttempt | None = None
    held = False  # whether this run holds the lease of ``attempt`` for its next step
    for _ in range(max_steps):
        step, attempt, held = _step(policy, subject, attempt, held=held, here=here)
        if step != Step.CONTINUE:
            break
    if held and attempt is not None:  # the run stopped before the step it kept the lease for
        _release(attempt)
    return step


def next_call(policy: GatePolicy, subject: Any, attempt: GateAttempt) -> PlannedCall | None:
    """The model call the subject's next step makes (None: bookkeeping only)."""
    if attempt.status == AttemptStatus.PENDING:
        return policy.produce_call(subject, attempt)
    if attempt.status == AttemptStatus.PRODUCED:
        return policy.judge_call(subject, attempt)
    if attempt.status == AttemptStatus.FAILED and _failures(policy, subject) < (
        policy.max_attempts()
    ):
        return policy.retry_call(subject, attempt)
    return None


def gate_queue(policy: GatePolicy, subject_id: int) -> str:
    """The queue that should take the subject's next step."""
    subject = policy.load(subject_id)
    attempt = attempts_of(policy, subject_id).order_by("-number").first()
    if attempt is None or not policy.is_active(subject):
        return queue_of(None)
    return queue_of(next_call(policy, subject, attempt))


def gate_send(policy: GatePolicy, subject_id: int, *, queue: str | None = None) -> None:
    """Send the subject's next step to its queue (after the current transaction commits)."""
    dispatch.gate(policy.kind, subject_id, queue=queue or gate_queue(policy, subject_id))


def gate_start(
    policy: GatePolicy, subject: Any, *, number: int, round_: int, plan: Retry
) -> GateAttempt | None:
    """Open attempt ``number`` of a loaded subject and send its first step to the queue of its
    producer (no reload: the hot path of every unit). None if a racer opened it (and sends it)."""
    attempt = attempt_open(policy, subject.pk, number=number, round_=round_, plan=plan)
    if attempt is not None:
        queue = queue_of(policy.produce_call(subject, attempt))
        dispatch.gate(policy.kind, subject.pk, queue=queue)
    return attempt


def _runs_here(call: PlannedCall | None, here: str | None) -> bool:
    return here is None or queue_of(call) == here


def _moved_elsewhere(
    policy: GatePolicy, subject: Any, call: PlannedCall | None, here: str | None
) -> bool:
    if here is None:
        return False
    queue = queue_of(call)  # routed once: the same rule as _runs_here
    if queue == here:
        return False
    dispatch.gate(policy.kind, subject.pk, queue=queue)
    return True


def _latest_attempt(policy: GatePolicy, subject_id: int) -> GateAttempt:
    attempt = attempts_of(policy, subject_id).order_by("-number").first()
    if attempt is None:
        raise LookupError(f"{policy.kind} {subject_id} is in its gate without an attempt")
    return attempt


def _step(
    policy: GatePolicy, subject: Any, attempt: GateAttempt | None, *, held: bool, here: str | None
) -> tuple[Step, GateAttempt | None, bool]:
    """One step; returns it, the subject's latest attempt as the step left it (None: not known
    here, e.g. a racer moved it, so the next step loads it) and whether this run holds that
    attempt's lease for its next step.

    ``held`` is only true for an attempt this run has just produced and judges here: the
    subject does not change within a run, so the judge step follows at once."""
    if not policy.is_active(subject):
        return Step.DONE, None, False
    attempt = attempt or _latest_attempt(policy, subject.pk)
    if attempt.status in (AttemptStatus.PENDING, AttemptStatus.PRODUCED):
        if _moved_elsewhere(policy, subject, next_call(policy, subject, attempt), here):
            return Step.MOVED, None, False
        return _work_on(policy, subject, attempt, held=held, here=here)
    if attempt.status == AttemptStatus.PASSED:
        with transaction.atomic():
            policy.on_pass(subject, attempt)
        return Step.DONE, None, False
    if attempt.status == AttemptStatus.ERRORED:
        with transaction.atomic():
            policy.on_error(
                subject, attempt, ProviderError(attempt.error, kind=ErrorKind.BAD_REQUEST)
            )
        return Step.DONE, None, False
    step, opened = _after_failure(policy, subject, attempt, here=here)
    return step, opened, False


def _lease_from_now() -> datetime:
    return timezone.now() + timedelta(seconds=settings.HILAPP_LEASE_S)


def _claim(attempt: GateAttempt) -> bool:
    now = timezone.now()
    return bool(
        GateAttempt.objects.filter(pk=attempt.pk, status=attempt.status)
        .filter(Q(lease_until__isnull=True) | Q(lease_until__lt=now))
        .update(lease_until=_lease_from_now())
    )


def _release(attempt: GateAttempt) -> None:
    """Free the attempt's lease, so that the step sent again (reconciler, retry) can claim it."""
    GateAttempt.objects.filter(pk=attempt.pk).update(lease_until=None)


def _move(attempt: GateAttempt, new: AttemptStatus, **updates: Any) -> GateAttempt | None:
    """Move the attempt (guarded) and return it as the database now holds it; None if a racer
    moved it first."""
    if not transition(GateAttempt, attempt.pk, old=attempt.status, new=new, **updates):
        return None
    attempt.status = new
    for name, value in updates.items():
        setattr(attempt, name, value)
    return attempt


def _work_on(
    policy: GatePolicy, subject: Any, attempt: GateAttempt, *, held: bool, here: str | None
) -> tuple[Step, GateAttempt | None, bool]:
    if not held and not _claim(attempt):
        return Step.BUSY, None, False
    try:
        if attempt.status == AttemptStatus.PENDING:
            produced = policy.produce(subject, attempt)
            name, digest = policy.save_image(produced.image)
            # Judged in this run: the move keeps the lease for the judge step (no second
            # claim); a worker that dies in between leaves it to expire, like any claim.
            keep = _runs_here(policy.judge_call(subject, attempt), here)
            moved = _move(
                attempt,
                AttemptStatus.PRODUCED,
                image=name,
                image_sha256=digest,
                producer_model=produced.model_label,
                lease_until=_lease_from_now() if keep else None,
            )
        else:
            keep = False
            verdict = policy.judge(subject, attempt)
            moved = _move(
                attempt,
                AttemptStatus.PASSED if verdict.passed else AttemptStatus.FAILED,
                reason=verdict.error_scope,
                judge_model=verdict.judge_model,
                score_sc=verdict.score_sc,
                score_pq=verdict.score_pq,
                score_overall=verdict.score_overall,
                error_scope=verdict.error_scope,
                report=verdict.report,
                finished_at=timezone.now(),
                lease_until=None,
            )
    except ProviderError as exc:
        if exc.kind == ErrorKind.BUDGET:
            _release(attempt)
            raise
        if exc.permanent or exc.kind == ErrorKind.MALFORMED:
            # A model that refuses, or whose answer never parses, gives no result: the
            # attempt errors out with the reason; it is never given a made-up score.
            moved = _move(
                attempt,
                AttemptStatus.ERRORED,
                reason=str(exc),
                error=str(exc),
                finished_at=timezone.now(),
                lease_until=None,
            )
            return Step.CONTINUE, moved, False
        _release(attempt)
        raise
    except StorageUnavailable:
        # The produced image could not be stored (or the judged one read): the reconciler sends
        # the step again, which must find the attempt unclaimed.
        _release(attempt)
        raise
    return Step.CONTINUE, moved, keep and moved is not None


def _failures(policy: GatePolicy, subject: Any) -> int:
    """Failed attempts in the subject's current round."""
    return (
        attempts_of(policy, subject.pk)
        .filter(round=policy.round_of(subject), status=AttemptStatus.FAILED)
        .count()
    )


def _after_failure(
    policy: GatePolicy, subject: Any, failed: GateAttempt, *, here: str | None
) -> tuple[Step, GateAttempt | None]:
    round_ = policy.round_of(subject)
    if _failures(policy, subject) < policy.max_attempts():
        if _moved_elsewhere(policy, subject, policy.retry_call(subject, failed), here):
            return Step.MOVED, None
        plan = policy.plan_retry(subject, failed)
        opened = attempt_open(
            policy, subject.pk, number=failed.number + 1, round_=round_, plan=plan
        )
        return Step.CONTINUE, opened
    with transaction.atomic():
        policy.on_exhausted(subject, failed)
    return Step.DONE, None
