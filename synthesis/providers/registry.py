"""Provider name → adapter module; builds and caches configured model objects.

Each adapter module exposes ``TEXT_MODEL`` and/or ``IMAGE_MODEL`` (subclasses of the base
interfaces). Modules are imported lazily so that, e.g., torch is loaded only by GPU workers.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from synthesis.providers.base import ErrorKind, ImageModel, ProviderError, TextModel
from synthesis.providers.routing import RouteEntry

PROVIDER_MODULES = {
    "sim": "synthesis.providers.sim",
    "openai": "synthesis.providers.openai",
    "gemini": "synthesis.providers.gemini",
    "diffusers": "synthesis.providers.diffusers",
}


@lru_cache(maxsize=64)
def _build(provider: str, model: str, capability: str, options_json: str) -> Any:
    try:
        module = importlib.import_module(PROVIDER_MODULES[provider])
    except ImportError as exc:
        raise ProviderError(
            f"provider {provider!r} is not installed here: {exc}", kind=ErrorKind.UNAVAILABLE
        ) from exc
    cls = getattr(module, capability, None)
    if cls is None:
        raise ProviderError(
            f"provider {provider!r} has no {capability.lower().replace('_', ' ')}",
            kind=ErrorKind.BAD_REQUEST,
        )
    return cls(model, json.loads(options_json))


def _options_key(options: Mapping[str, Any] | None) -> str:
    return json.dumps(options or {}, sort_keys=True, default=str)


def text_model(entry: RouteEntry, options: Mapping[str, Any] | None = None) -> TextModel:
    model: TextModel = _build(entry.provider, entry.model, "TEXT_MODEL", _options_key(options))
    return model


def image_model(entry: RouteEntry, options: Mapping[str, Any] | None = None) -> ImageModel:
    model: ImageModel = _build(entry.provider, entry.model, "IMAGE_MODEL", _options_key(options))
    return model
