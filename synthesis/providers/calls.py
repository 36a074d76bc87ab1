"""The one place a model is called: routing, budget, limits, retries and the ledger.

Every request sent to a model is a ``ModelCall`` row. The row is written (``started``, with a
cost estimate reserved against the batch budget) before the request goes out and completed
(``ok``/``failed``, real cost, latency, tokens) when it returns, each in its own short
transaction, so spend is visible to every worker while calls are in flight and a worker that
dies mid-call leaves a ``started`` row for the reconciler to close.
"""

from __future__ import annotations

import logging
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, TypeVar

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Sum
from django.utils import timezone
from tenacity import RetryCallState, Retrying, retry_if_exception, wait_random_exponential

from hilapp.imaging import sha256_hex
from synthesis.models import Batch, ModelCall
from synthesis.providers import limits, pricing, registry
from synthesis.providers.base import (
    ErrorKind,
    ImageRequest,
    ImageResult,
    ProviderError,
    Role,
    TextRequest,
    TextResult,
    Usage,
)
from synthesis.providers.queues import queue_for
from synthesis.providers.routing import RouteEntry, choose
from synthesis.states import BatchStatus, CallStatus

log = logging.getLogger(__name__)

R = TypeVar("R", TextResult, ImageResult)


@dataclass
class CallContext:
    """Where a call belongs: its batch (budget, overrides), gate attempt and subject."""

    batch_id: int | None = None
    attempt_id: int | None = None
    subject: str = ""
    seed: int = 0
    role_overrides: dict[str, str] = field(default_factory=dict)
    provider_options: dict[str, Any] = field(default_factory=dict)
    # Whether the batch had a budget when the step loaded it. Without one a call skips the
    # budget lock (one INSERT instead of a locked read and a transaction). A budget is only
    # ever set on a paused batch (resume), so at most steps already in flight miss it.
    budgeted: bool = True

    @classmethod
    def for_batch(
        cls, batch: Batch, *, subject: str = "", attempt_id: int | None = None
    ) -> CallContext:
        params = batch.params or {}
        return cls(
            batch_id=batch.pk,
            attempt_id=attempt_id,
            subject=subject,
            seed=batch.seed,
            role_overrides=dict(params.get("roles") or {}),
            provider_options={"sim": {**(params.get("sim") or {}), "seed": batch.seed}},
            budgeted=batch.budget_usd is not None,
        )


class BudgetExceeded(ProviderError):
    def __init__(self, message: str) -> None:
        super().__init__(message, kind=ErrorKind.BUDGET)


def select_entry(role: Role, request: TextRequest | ImageRequest, ctx: CallContext) -> RouteEntry:
    return choose(
        role,
        seed=ctx.seed,
        key=request.seed_key or ctx.subject,
        overrides=ctx.role_overrides,
        available=limits.available,
    )


@dataclass(frozen=True)
class PlannedCall:
    """The next model call of a pipeline step: enough to know which queue should make it."""

    role: Role
    seed_key: str
    ctx: CallContext


def queue_of(call: PlannedCall | None) -> str:
    """The queue whose workers make this call, by the provider the ensemble routes it to.

    The choice is the one ``select_entry`` makes (same seed, key and overrides), except that
    open circuits are not consulted: they are a worker's runtime view, and a step that finds
    its provider's circuit open falls back to another entry wherever it runs.
    A step without a model call (bookkeeping) runs on the default queue.
    """
    if call is None:
        return queue_for(None)
    entry = choose(
        call.role,
        seed=call.ctx.seed,
        key=call.seed_key or call.ctx.subject,
        overrides=call.ctx.role_overrides,
    )
    return queue_for(entry)


def call_text(
    request: TextRequest, ctx: CallContext, *, entry: RouteEntry | None = None
) -> tuple[TextResult, ModelCall]:
    entry = entry or select_entry(request.role, request, ctx)
    model = registry.text_model(entry, _options(entry, ctx))
    return _call_with_retries(entry, request, ctx, model.complete_json, images_out=0)


def call_image(
    request: ImageRequest, ctx: CallContext, *, entry: RouteEntry | None = None
) -> tuple[ImageResult, ModelCall]:
    entry = entry or select_entry(request.role, request, ctx)
    model = registry.image_model(entry, _options(entry, ctx))
    return _call_with_retries(entry, request, ctx, model.generate, images_out=1)


def max_input_images(role: Role, ctx: CallContext, entry: RouteEntry) -> int | None:
    return registry.image_model(entry, _options(entry, ctx)).max_input_images


def _options(entry: RouteEntry, ctx: CallContext) -> dict[str, Any]:
    return dict(ctx.provider_options.get(entry.provider) or {})


def _retry_budget_left(state: RetryCallState) -> bool:
    """Stop when transient errors or unparseable answers have used their retries."""
    errors = getattr(state, "hilapp_errors", [])
    malformed = sum(1 for e in errors if e.kind == ErrorKind.MALFORMED)
    transient = len(errors) - malformed
    return (
        malformed > settings.HILAPP_PARSE_RETRIES or transient > settings.HILAPP_TRANSIENT_RETRIES
    )


def _wait(state: RetryCallState) -> float:
    exc = state.outcome.exception() if state.outcome else None
    if isinstance(exc, ProviderError) and exc.retry_after is not None:
        return min(exc.retry_after, settings.HILAPP_RETRY_MAX_S)
    if isinstance(exc, ProviderError) and exc.kind == ErrorKind.MALFORMED:
        return 0.0  # asking again at once is fine: the service answered
    backoff = wait_random_exponential(
        multiplier=settings.HILAPP_RETRY_BASE_S, max=settings.HILAPP_RETRY_MAX_S
    )
    return float(backoff(state))


def _call_with_retries(
    entry: RouteEntry,
    request: Any,
    ctx: CallContext,
    send: Any,
    *,
    images_out: int,
) -> tuple[Any, ModelCall]:
    errors: list[ProviderError] = []

    def remember(state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, ProviderError):
            errors.append(exc)
        state.hilapp_errors = errors  # type: ignore[attr-defined]

    retrying = Retrying(
        retry=retry_if_exception(lambda e: isinstance(e, ProviderError) and not e.permanent),
        stop=_retry_budget_left,
        wait=_wait,
        after=remember,
        reraise=True,
    )
    for attempt in retrying:
        with attempt:
            request.try_number = attempt.retry_state.attempt_number - 1
            return _call_once(entry, request, ctx, send, images_out=images_out)
    raise AssertionError("unreachable")  # pragma: no cover


def _call_once(
    entry: RouteEntry, request: Any, ctx: CallContext, send: Any, *, images_out: int
) -> tuple[Any, ModelCall]:
    call = _start(entry, request, ctx, images_out=images_out)
    _release_connection()
    limits.acquire(entry, tokens=len(request.prompt.text) // 3)
    started = time.monotonic()
    try:
        result = send(request)
    except ProviderError as exc:
        limits.report(entry, error=exc)
        _finish_failed(call, exc, latency_ms=_ms_since(started))
        log.warning("%s %s failed (%s): %s", request.role, entry.label, exc.kind, exc)
        raise
    limits.report(entry, error=None)
    _finish_ok(call, entry, result, latency_ms=_ms_since(started))
    return result, call


def _release_connection() -> None:
    """Hand a pooled database connection back while the request waits on the network.

    An api worker keeps hundreds of calls in flight; each would otherwise hold a PostgreSQL
    connection for seconds doing nothing. With the pool (``DB_POOL_MAX_SIZE``) the next query
    takes one back in microseconds. Never inside a transaction, whose connection must stay.
    """
    if connection.settings_dict.get("OPTIONS", {}).get("pool") and not connection.in_atomic_block:
        connection.close()


def _ms_since(started: float) -> int:
    return int((time.monotonic() - started) * 1000)


def _start(entry: RouteEntry, request: Any, ctx: CallContext, *, images_out: int) -> ModelCall:
    estimate = pricing.estimate_usd(
        entry.model, prompt_chars=len(request.prompt.text), images_out=images_out
    )
    inputs = {
        "prompt": request.prompt.text,
        "images": [sha256_hex(image) for image in request.images],
    }
    try:
        with transaction.atomic() if ctx.budgeted else nullcontext():
            if ctx.batch_id is not None and ctx.budgeted:
                _reserve_budget(ctx.batch_id, estimate)
            return ModelCall.objects.create(
                batch_id=ctx.batch_id,
                attempt_id=ctx.attempt_id,
                subject=ctx.subject[:64],
                role=request.role.value,
                provider=entry.provider,
                model=entry.model,
                prompt_name=request.prompt.name,
                prompt_version=request.prompt.version,
                seed_key=request.seed_key[:128],
                try_number=request.try_number,
                inputs=inputs,
                images_in=len(request.images),
                cost_usd=estimate,
                worker=_worker_name(),
            )
    except BudgetExceeded as exc:
        _pause_for_budget(ctx.batch_id, str(exc))
        raise


def _worker_name() -> str:
    from celery import current_task

    request = getattr(current_task, "request", None)
    return str(getattr(request, "hostname", "") or "")[:128]


def _pause_for_budget(batch_id: int | None, message: str) -> None:
    from synthesis.transitions import transition

    if batch_id is not None:
        transition(
            Batch,
            batch_id,
            old=BatchStatus.RUNNING,
            new=BatchStatus.PAUSED,
            reason=message,
            note=message,
        )


def _reserve_budget(batch_id: int, estimate: Decimal) -> None:
    """Refuse the call if the batch's spend plus calls in flight plus this one would exceed it.

    The batch row is locked so that two workers cannot both reserve the last dollar.
    """
    batch = Batch.objects.select_for_update().get(pk=batch_id)
    if batch.budget_usd is None:
        return
    spent = ModelCall.objects.filter(batch_id=batch_id).aggregate(total=Sum("cost_usd"))["total"]
    spent = spent or Decimal(0)
    if spent + estimate > batch.budget_usd:
        message = (
            f"budget reached: spent and reserved USD {spent:.4f} of {batch.budget_usd:.4f}; "
            f"the next call would need about USD {estimate:.4f}"
        )
        raise BudgetExceeded(message)


def _finish_ok(call: ModelCall, entry: RouteEntry, result: Any, *, latency_ms: int) -> None:
    usage: Usage = result.usage
    if isinstance(result, ImageResult):
        output: dict[str, Any] = {"image_sha256": sha256_hex(result.image)}
    else:
        output = {"raw": result.raw[:20000]}
    ModelCall.objects.filter(pk=call.pk).update(
        status=CallStatus.OK,
        output=output,
        tokens_in=usage.tokens_in,
        tokens_out=usage.tokens_out,
        images_in=max(usage.images_in, call.images_in),
        images_out=usage.images_out,
        cost_usd=pricing.cost_usd(entry.model, usage),
        latency_ms=latency_ms,
        finished_at=timezone.now(),
    )
    call.status = CallStatus.OK


def _finish_failed(call: ModelCall, exc: ProviderError, *, latency_ms: int) -> None:
    # An answer that was produced but is unusable (malformed, refused) is still billed: its real
    # usage when the adapter carried it on the error, else the estimate for a malformed one.
    usage = exc.usage or Usage()
    if exc.usage is not None:
        cost = pricing.cost_usd(call.model, exc.usage)
    else:
        cost = call.cost_usd if exc.kind == ErrorKind.MALFORMED else Decimal(0)
    ModelCall.objects.filter(pk=call.pk).update(
        status=CallStatus.FAILED,
        error_kind=exc.kind.value,
        error=str(exc.args[0] if exc.args else exc)[:4000],  # the kind has its own column
        tokens_in=usage.tokens_in,
        tokens_out=usage.tokens_out,
        cost_usd=cost,
        latency_ms=latency_ms,
        finished_at=timezone.now(),
    )
    call.status = CallStatus.FAILED
