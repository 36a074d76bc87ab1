"""Which provider:model serves a role: weighted entries, seeded choice (the model ensemble).

A role's entries come from, in order: the batch's overrides, ``HILAPP_ROLE_<ROLE>`` in the
environment, then the defaults below (the paper's mix when API keys are set, the simulator
otherwise). The spec format is ``provider:model=weight,…`` (weight defaults to 1).
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from django.conf import settings

from synthesis.providers.base import ErrorKind, ProviderError, Role

KNOWN_PROVIDERS = ("sim", "openai", "gemini", "diffusers")


@dataclass(frozen=True)
class RouteEntry:
    provider: str
    model: str
    weight: float = 1.0

    @property
    def label(self) -> str:
        return f"{self.provider}:{self.model}"


class RouteError(ValueError):
    """A role→provider spec that cannot be used; the message says what to fix."""


def parse_entries(spec: str, *, role: str = "") -> list[RouteEntry]:
    where = f" for role {role!r}" if role else ""
    entries = []
    for raw in spec.split(","):
        item = raw.strip()
        if not item:
            continue
        target, _, weight_text = item.partition("=")
        provider, sep, model = target.strip().partition(":")
        if not sep or not provider or not model:
            raise RouteError(f"{item!r}{where}: expected provider:model[=weight]")
        if provider not in KNOWN_PROVIDERS:
            raise RouteError(
                f"{item!r}{where}: unknown provider {provider!r} (one of {KNOWN_PROVIDERS})"
            )
        try:
            weight = float(weight_text) if weight_text.strip() else 1.0
        except ValueError:
            raise RouteError(f"{item!r}{where}: weight {weight_text!r} is not a number") from None
        if weight <= 0:
            raise RouteError(f"{item!r}{where}: weight must be positive")
        entries.append(RouteEntry(provider, model.strip(), weight))
    if not entries:
        raise RouteError(f"empty provider list{where}")
    return entries


def _paper_defaults() -> dict[Role, str]:
    """The paper's models, restricted to the providers that have credentials here."""
    has_openai = bool(settings.OPENAI_API_KEY)
    has_gemini = bool(settings.GEMINI_API_KEY)
    llms = ",".join(
        e
        for e, ok in (("openai:gpt-4o=1", has_openai), ("gemini:gemini-2.5-pro=1", has_gemini))
        if ok
    )
    image = "gemini:gemini-2.5-flash-image" if has_gemini else "openai:gpt-image-1"
    renderer = "diffusers:flux" if settings.DIFFUSERS_FLUX_PATH else image
    editor = "diffusers:qwen-image-edit" if settings.DIFFUSERS_QWEN_EDIT_PATH else image
    return {
        Role.PLANNER: llms,
        Role.JUDGE: llms,
        Role.ARBITRATOR: llms,
        Role.CHARACTER_RENDERER: renderer,
        Role.REFERENCE_EDITOR: editor,
        Role.FRAME_SYNTHESIZER: image,
        Role.LOCAL_EDITOR: editor,
    }


# Offline: the simulator, under the names of the paper's models so that the ensemble, the
# ledger and the cost figures look like a real run.
SIM_DEFAULTS: dict[Role, str] = {
    Role.PLANNER: "sim:gpt-4o=1,sim:gemini-2.5-pro=1",
    Role.JUDGE: "sim:gpt-4o=1,sim:gemini-2.5-pro=1",
    Role.ARBITRATOR: "sim:gpt-4o=1,sim:gemini-2.5-pro=1",
    Role.CHARACTER_RENDERER: "sim:flux.1-dev",
    Role.REFERENCE_EDITOR: "sim:qwen-image-edit",
    Role.FRAME_SYNTHESIZER: "sim:gemini-2.5-flash-image",
    Role.LOCAL_EDITOR: "sim:qwen-image-edit",
}


def default_specs() -> dict[Role, str]:
    if settings.OPENAI_API_KEY or settings.GEMINI_API_KEY:
        return _paper_defaults()
    return dict(SIM_DEFAULTS)


def role_entries(role: Role, overrides: Mapping[str, str] | None = None) -> list[RouteEntry]:
    spec = (overrides or {}).get(role.value) or settings.HILAPP_ROLE_OVERRIDES.get(role.value)
    return parse_entries(spec or default_specs()[role], role=role.value)


def validate_overrides(overrides: Mapping[str, str]) -> None:
    """Raise RouteError for an unknown role or a bad spec (used before a batch launches)."""
    for role_name, spec in overrides.items():
        try:
            role = Role(role_name)
        except ValueError:
            raise RouteError(
                f"unknown role {role_name!r} (one of {[r.value for r in Role]})"
            ) from None
        parse_entries(spec, role=role.value)


def choose(
    role: Role,
    *,
    seed: int,
    key: str,
    overrides: Mapping[str, str] | None = None,
    available: Callable[[RouteEntry], bool] = lambda entry: True,
) -> RouteEntry:
    """Pick an entry at random by weight; the same (seed, key, role) always picks the same.

    Entries that are not ``available`` (circuit open) are skipped while others remain.
    """
    entries = [e for e in role_entries(role, overrides) if available(e)]
    if not entries:
        raise ProviderError(
            f"no available provider for role {role.value}", kind=ErrorKind.UNAVAILABLE
        )
    digest = hashlib.sha256(f"{seed}|{key}|{role.value}".encode()).digest()
    rng = random.Random(int.from_bytes(digest[:8], "big"))
    return rng.choices(entries, weights=[e.weight for e in entries], k=1)[0]
