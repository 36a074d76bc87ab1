"""Batches: validation of launch parameters, and the checks steps make before new work."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any

from synthesis.models import Batch
from synthesis.providers.routing import RouteError, validate_overrides
from synthesis.providers.sim import SimConfigError, validate_rates
from synthesis.states import BatchStatus

MAX_BATCH_COUNT = 100_000


class LaunchError(ValueError):
    """Bad launch parameters; the message is for the person who launched. Nothing was created."""


def clean_count(value: Any) -> int:
    try:
        count = int(value)
    except (TypeError, ValueError):
        raise LaunchError(f"count must be a whole number, not {value!r}") from None
    if not 1 <= count <= MAX_BATCH_COUNT:
        raise LaunchError(f"count must be between 1 and {MAX_BATCH_COUNT}, not {count}")
    return count


def clean_budget(value: Any) -> Decimal | None:
    if value in (None, ""):
        return None
    try:
        budget = Decimal(str(value))
    except InvalidOperation:
        raise LaunchError(f"budget must be a number of US dollars, not {value!r}") from None
    if not budget.is_finite() or budget <= 0:
        raise LaunchError(f"budget must be a positive number of US dollars, not {value}")
    return budget


def clean_common_params(params: dict[str, Any]) -> dict[str, Any]:
    """Role overrides and simulator settings, checked before anything is created."""
    cleaned = dict(params)
    roles = cleaned.get("roles") or {}
    if not isinstance(roles, dict):
        raise LaunchError("roles must map a role name to 'provider:model=weight,…'")
    try:
        validate_overrides(roles)
    except RouteError as exc:
        raise LaunchError(str(exc)) from None
    sim = cleaned.get("sim") or {}
    if not isinstance(sim, dict):
        raise LaunchError("sim must be an object like {'faults': {'low_viescore': 0.3}}")
    try:
        if "faults" in sim:
            sim["faults"] = validate_rates(sim["faults"])
    except SimConfigError as exc:
        raise LaunchError(str(exc)) from None
    if "latency_ms" in sim:
        try:
            sim["latency_ms"] = max(0.0, float(sim["latency_ms"]))
        except (TypeError, ValueError):
            raise LaunchError("sim latency_ms must be a number") from None
    if sim:
        cleaned["sim"] = sim
    return cleaned


def batch_accepts_work(batch: Batch) -> bool:
    """New units of work start only in a running batch (paused: later; cancelled: never)."""
    return batch.status == BatchStatus.RUNNING
