"""Launch parameters, cleaned once for every door (API, admin page, CLI).

A leaf module: it imports no other service, so ``synthesis.services.batches`` and the phase
launchers can all use it. Every rule here matches what the database column holds or what the
pipeline can run, so a launch that passes cannot store a row that later pages fail to read:

- ``count``: a whole number (not ``1.5``, ``true`` or ``"1_0"``), 1..``MAX_BATCH_COUNT``;
- ``seed``: a whole number that fits ``Batch.seed`` (64-bit), not negative;
- ``budget_usd``: finite, positive once rounded to the column's 4 decimal places, and below
  what ``Batch.budget_usd`` (12 digits, 4 decimals) holds;
- ``params``: known keys per kind only, bounded sizes, no NUL bytes; role specs name a known
  provider and a model that provider serves, with finite positive weights; simulator fault
  rates in 0..1 and a latency of 0..``MAX_SIM_LATENCY_MS``.

A ``LaunchError`` names the offending ``field`` so that forms and the API can point at it.
"""

from __future__ import annotations

import json
import math
import re
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from typing import Any

from synthesis.providers.base import Role
from synthesis.providers.pricing import DEFAULT_PRICES, price_table
from synthesis.providers.routing import KNOWN_PROVIDERS
from synthesis.providers.sim import FAULTS

MAX_BATCH_COUNT = 100_000
MAX_SEED = 2**63 - 1  # Batch.seed is a BigIntegerField
BUDGET_PLACES = Decimal("0.0001")  # Batch.budget_usd: max_digits=12, decimal_places=4
MAX_BUDGET_USD = Decimal("99999999.9999")
MAX_SIM_LATENCY_MS = 60_000.0
MAX_WEIGHT = 1_000_000.0
MAX_PARAMS_BYTES = 16 * 1024
MAX_LIST_ITEMS = 50
MAX_NAME_CHARS = 64
MAX_SPEC_CHARS = 1_000
MAX_FRAMES_LIMIT = 50
MAX_CAST = 5

KINDS = ("characters", "stories", "frames")
COMMON_KEYS = frozenset({"roles", "sim"})
KIND_KEYS: dict[str, frozenset[str]] = {
    "characters": COMMON_KEYS | {"subject_categories", "profession_categories"},
    "stories": COMMON_KEYS | {"genres", "min_frames", "max_frames", "max_cast"},
    "frames": COMMON_KEYS,
}
SIM_KEYS = frozenset({"faults", "latency_ms"})

# The models each provider's adapter serves. The simulator stands in for any of them (it runs
# under the paper's model names so that ledgers and costs look like a real run). Models added
# to the price table with HILAPP_PRICES are accepted for every provider: naming a price is how
# an operator says a model exists.
PROVIDER_MODELS: dict[str, frozenset[str]] = {
    "openai": frozenset({"gpt-4o", "gpt-image-1"}),
    "gemini": frozenset({"gemini-2.5-pro", "gemini-2.5-flash-image"}),
    "diffusers": frozenset({"flux", "flux.1-dev", "qwen-image-edit"}),
}

_WHOLE_NUMBER = re.compile(r"[+-]?[0-9]{1,19}")


class LaunchError(ValueError):
    """Bad launch parameters; the message is for the person who launched. Nothing was created.

    ``field`` names the parameter at fault (``count``, ``budget_usd``, ``params.roles``, …).
    """

    def __init__(self, message: str, *, field: str = "params") -> None:
        super().__init__(message)
        self.field = field


# --- numbers --------------------------------------------------------------------------------


def clean_whole_number(value: Any, *, field: str, low: int, high: int) -> int:
    """An int, or a string of plain digits; never a bool, a float or ``"1_0"``."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise LaunchError(f"{field} must be a whole number, not {value!r}", field=field)
    if isinstance(value, str):
        text = value.strip()
        if not _WHOLE_NUMBER.fullmatch(text):
            raise LaunchError(f"{field} must be a whole number, not {value[:40]!r}", field=field)
        value = int(text)
    if not low <= value <= high:
        raise LaunchError(f"{field} must be between {low} and {high}", field=field)
    return value


def clean_count(value: Any) -> int:
    return clean_whole_number(value, field="count", low=1, high=MAX_BATCH_COUNT)


def clean_seed(value: Any) -> int:
    if value is None or value == "":
        return 0
    return clean_whole_number(value, field="seed", low=0, high=MAX_SEED)


def clean_budget(value: Any, *, field: str = "budget_usd") -> Decimal | None:
    """USD rounded to the column's 4 places; ``None``/``""`` mean no limit."""
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, int | float | str | Decimal):
        raise LaunchError(f"budget must be a number of US dollars, not {value!r}", field=field)
    if isinstance(value, str) and len(value) > 40:
        raise LaunchError("budget must be a number of US dollars", field=field)
    try:
        budget = Decimal(str(value).strip())
    except InvalidOperation:
        raise LaunchError(
            f"budget must be a number of US dollars, not {value!r}", field=field
        ) from None
    if not budget.is_finite() or budget <= 0:
        raise LaunchError("budget must be a positive number of US dollars", field=field)
    if budget > MAX_BUDGET_USD:
        raise LaunchError(f"budget must be at most {MAX_BUDGET_USD} US dollars", field=field)
    rounded = budget.quantize(BUDGET_PLACES, rounding=ROUND_HALF_EVEN)
    if rounded <= 0:
        raise LaunchError(
            f"budget {value} rounds to zero (budgets are kept to {BUDGET_PLACES} USD)",
            field=field,
        )
    return rounded


def _finite_number(value: Any, *, field: str) -> float:
    if isinstance(value, bool):
        raise LaunchError(f"{field} must be a number, not {value!r}", field=field)
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        shown = str(value)[:40]
        raise LaunchError(f"{field} must be a number, not {shown!r}", field=field) from None
    if not math.isfinite(number):
        raise LaunchError(f"{field} must be a finite number, not {value!r}", field=field)
    return number


# --- text -----------------------------------------------------------------------------------


def clean_name(value: Any, *, field: str, max_chars: int = MAX_NAME_CHARS) -> str:
    if not isinstance(value, str):
        raise LaunchError(f"{field} must be text, not {type(value).__name__}", field=field)
    text = value.strip()
    if "\x00" in text:
        raise LaunchError(f"{field} must not contain NUL characters", field=field)
    if not 1 <= len(text) <= max_chars:
        raise LaunchError(f"{field} must be 1 to {max_chars} characters", field=field)
    return text


def clean_name_list(value: Any, *, field: str) -> list[str]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list):
        raise LaunchError(f"{field} must be a list of names", field=field)
    if len(value) > MAX_LIST_ITEMS:
        raise LaunchError(f"{field} takes at most {MAX_LIST_ITEMS} names", field=field)
    return [clean_name(item, field=field) for item in value]


# --- roles ----------------------------------------------------------------------------------


def model_is_known(provider: str, model: str) -> bool:
    added = set(price_table()) - set(DEFAULT_PRICES)
    if model in added:
        return True
    if provider == "sim":
        return model in DEFAULT_PRICES
    return model in PROVIDER_MODELS.get(provider, frozenset())


def clean_role_spec(role: str, spec: Any) -> str:
    """``provider:model=weight,…`` with known providers and models and finite positive weights;
    returned in a normal form."""
    field = f"params.roles.{role}"
    if not isinstance(spec, str):
        raise LaunchError(
            f"{field} must be text like 'provider:model=weight,…', not {type(spec).__name__}",
            field=field,
        )
    if "\x00" in spec or len(spec) > MAX_SPEC_CHARS:
        raise LaunchError(f"{field} must be 1 to {MAX_SPEC_CHARS} characters", field=field)
    entries = []
    for raw in spec.split(","):
        item = raw.strip()
        if not item:
            continue
        target, _, weight_text = item.partition("=")
        provider, sep, model = (part.strip() for part in target.partition(":"))
        if not sep or not provider or not model:
            raise LaunchError(f"{field}: {item!r}: expected provider:model[=weight]", field=field)
        if provider not in KNOWN_PROVIDERS:
            raise LaunchError(
                f"{field}: {item!r}: unknown provider {provider!r} (one of {KNOWN_PROVIDERS})",
                field=field,
            )
        if not model_is_known(provider, model):
            served = sorted(DEFAULT_PRICES if provider == "sim" else PROVIDER_MODELS[provider])
            raise LaunchError(
                f"{field}: {item!r}: unknown model {model!r} for {provider} (one of {served}; "
                "add others to HILAPP_PRICES)",
                field=field,
            )
        try:
            weight = _finite_number(weight_text.strip() or 1, field=f"{field} weight")
        except LaunchError as exc:
            raise LaunchError(str(exc), field=field) from None
        if not 0 < weight <= MAX_WEIGHT:
            raise LaunchError(
                f"{field}: {item!r}: weight must be above 0 and at most {MAX_WEIGHT:g}",
                field=field,
            )
        entries.append(f"{provider}:{model}={weight:g}")
    if not entries:
        raise LaunchError(f"{field}: empty provider list", field=field)
    return ",".join(entries)


def clean_roles(value: Any) -> dict[str, str]:
    if not isinstance(value, dict):
        raise LaunchError(
            "params.roles must map a role name to 'provider:model=weight,…'", field="params.roles"
        )
    known = [r.value for r in Role]
    cleaned = {}
    for role, spec in value.items():
        if role not in known:
            raise LaunchError(f"unknown role {role!r} (one of {known})", field="params.roles")
        cleaned[role] = clean_role_spec(role, spec)
    return cleaned


# --- simulator ------------------------------------------------------------------------------


def clean_fault_rates(value: Any) -> dict[str, float]:
    field = "params.sim.faults"
    if not isinstance(value, dict):
        raise LaunchError(f"{field} must map a fault kind to a rate", field=field)
    rates = {}
    for kind, raw in value.items():
        if kind not in FAULTS:
            raise LaunchError(
                f"unknown fault kind {str(kind)[:40]!r} (one of {sorted(FAULTS)})", field=field
            )
        rate = _finite_number(raw, field=f"{field}.{kind}")
        if not 0.0 <= rate <= 1.0:
            raise LaunchError(f"fault rate {kind}={rate} must be between 0 and 1", field=field)
        rates[kind] = rate
    return rates


def clean_latency_ms(value: Any) -> float:
    field = "params.sim.latency_ms"
    latency = _finite_number(value, field=field)
    if not 0 <= latency <= MAX_SIM_LATENCY_MS:
        raise LaunchError(
            f"sim latency_ms must be between 0 and {MAX_SIM_LATENCY_MS:g}, not {latency:g}",
            field=field,
        )
    return latency


def clean_sim(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise LaunchError(
            "params.sim must be an object like {'faults': {'low_viescore': 0.3}}",
            field="params.sim",
        )
    unknown = set(value) - SIM_KEYS
    if unknown:
        raise LaunchError(
            f"unknown params.sim keys {sorted(map(str, unknown))[:5]} (one of {sorted(SIM_KEYS)})",
            field="params.sim",
        )
    sim: dict[str, Any] = {}
    if "faults" in value:
        sim["faults"] = clean_fault_rates(value["faults"])
    if "latency_ms" in value:
        sim["latency_ms"] = clean_latency_ms(value["latency_ms"])
    return sim


# --- params ---------------------------------------------------------------------------------


def _check_size(params: Any) -> None:
    try:
        size = len(json.dumps(params))  # non-finite numbers are refused where they are read
    except (TypeError, ValueError):
        raise LaunchError(
            "params must be plain JSON (objects, lists, text, finite numbers)", field="params"
        ) from None
    if size > MAX_PARAMS_BYTES:
        raise LaunchError(f"params must be at most {MAX_PARAMS_BYTES} bytes", field="params")


def clean_common_params(params: Any) -> dict[str, Any]:
    """Role overrides and simulator settings, checked before anything is created; other keys
    pass through (``clean_params`` checks them per kind)."""
    if params is None:
        return {}
    if not isinstance(params, dict):
        raise LaunchError("params must be an object", field="params")
    _check_size(params)
    cleaned = dict(params)
    if cleaned.get("roles"):
        cleaned["roles"] = clean_roles(cleaned["roles"])
    else:
        cleaned.pop("roles", None)
    if cleaned.get("sim"):
        cleaned["sim"] = clean_sim(cleaned["sim"])
    else:
        cleaned.pop("sim", None)
    return cleaned


def clean_params(kind: str, params: Any) -> dict[str, Any]:
    """All of a launch's ``params`` for ``kind``: known keys only, each checked."""
    cleaned = clean_common_params(params)
    allowed = KIND_KEYS[kind]
    unknown = set(cleaned) - allowed
    if unknown:
        names = sorted(str(name)[:40] for name in unknown)[:5]
        raise LaunchError(
            f"unknown params for {kind} batches: {names} (known: {sorted(allowed)})",
            field="params",
        )
    for name in ("subject_categories", "profession_categories"):
        if name in cleaned:
            cleaned[name] = clean_name_list(cleaned[name], field=f"params.{name}")
    if "genres" in cleaned and cleaned["genres"] not in (None, "", []):
        cleaned["genres"] = clean_name_list(cleaned["genres"], field="params.genres")
    for name, high in (
        ("min_frames", MAX_FRAMES_LIMIT),
        ("max_frames", MAX_FRAMES_LIMIT),
        ("max_cast", MAX_CAST),
    ):
        if name in cleaned:
            cleaned[name] = clean_whole_number(
                cleaned[name], field=f"params.{name}", low=1, high=high
            )
    return cleaned


def clean_launch(
    *, count: Any, budget_usd: Any, params: Any
) -> tuple[int, Decimal | None, dict[str, Any]]:
    """The parameters every launcher checks first: (count, budget, cleaned params)."""
    return clean_count(count), clean_budget(budget_usd), clean_common_params(params)


def clean_launch_request(
    *, kind: Any, count: Any, seed: Any, budget_usd: Any, params: Any
) -> dict[str, Any]:
    """Everything a launch names, checked before any launcher runs; the cleaned arguments."""
    if kind not in KINDS:
        shown = str(kind)[:40]
        raise LaunchError(f"kind must be one of {list(KINDS)}, not {shown!r}", field="kind")
    return {
        "kind": kind,
        "count": clean_count(count),
        "seed": clean_seed(seed),
        "budget_usd": clean_budget(budget_usd),
        "params": clean_params(kind, params),
    }
