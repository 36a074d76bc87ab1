"""Google Gemini: Gemini 2.5 Pro with JSON output; gemini-2.5-flash-image generate and edit.

Uses the official ``google-genai`` SDK with its retries off (one attempt): retries, back-off and
``Retry-After`` are ``calls.py``'s job. Safety blocks (prompt feedback or a SAFETY-like finish
reason) are CONTENT_POLICY; the SDK's ``APIError`` and transport errors map to the other kinds.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from functools import lru_cache
from typing import Any

import httpx
from django.conf import settings
from google import genai
from google.genai import errors, types
from pydantic import BaseModel

from synthesis.providers.base import (
    ErrorKind,
    ImageModel,
    ImageRequest,
    ImageResult,
    ProviderError,
    TextModel,
    TextRequest,
    TextResult,
    Usage,
    duration_s,
    kind_for_status,
    parse_json_output,
    retry_after_s,
)
from synthesis.providers.openai import validated_png
from synthesis.providers.sdk_clients import connection_limits, shared_client

try:  # the SDK may talk through either client library
    import httpx2

    _TIMEOUTS: tuple[type[BaseException], ...] = (
        httpx.TimeoutException,
        httpx2.TimeoutException,
    )
    _TRANSPORT: tuple[type[BaseException], ...] = (httpx.TransportError, httpx2.TransportError)
except ImportError:  # pragma: no cover
    _TIMEOUTS, _TRANSPORT = (httpx.TimeoutException,), (httpx.TransportError,)

_MAPPED: tuple[type[BaseException], ...] = (
    errors.APIError,
    *_TIMEOUTS,
    *_TRANSPORT,
    json.JSONDecodeError,
    ValueError,
)

# Finish / block reasons that mean the safety system refused.
POLICY_REASONS = frozenset(
    {
        "SAFETY",
        "BLOCKLIST",
        "PROHIBITED_CONTENT",
        "SPII",
        "IMAGE_SAFETY",
        "IMAGE_PROHIBITED_CONTENT",
        "RECITATION",
        "IMAGE_RECITATION",
        "JAILBREAK",
        "MODEL_ARMOR",
    }
)
ASPECT_RATIOS = ("1:1", "2:3", "3:2", "3:4", "4:3", "4:5", "5:4", "9:16", "16:9", "21:9")


def _build_client(api_key: str, base_url: str | None, timeout_s: float) -> genai.Client:
    options = types.HttpOptions(
        base_url=base_url,
        timeout=int(timeout_s * 1000),  # milliseconds
        retry_options=types.HttpRetryOptions(attempts=1),
        client_args={"limits": connection_limits()},
    )
    return genai.Client(api_key=api_key, http_options=options)


def _client(api_key: str, base_url: str | None, timeout_s: float) -> genai.Client:
    return shared_client(
        ("gemini", api_key, base_url, timeout_s),
        lambda: _build_client(api_key, base_url, timeout_s),
    )


def client() -> genai.Client:
    if not settings.GEMINI_API_KEY:
        raise ProviderError(
            "GEMINI_API_KEY (or GOOGLE_API_KEY) is not set",
            kind=ErrorKind.UNAVAILABLE,
            permanent=True,
        )
    return _client(settings.GEMINI_API_KEY, settings.GEMINI_BASE_URL, settings.PROVIDER_TIMEOUT_S)


def _retry_info_s(details: Any) -> float | None:
    """``google.rpc.RetryInfo`` in an error body: ``{"retryDelay": "1.5s"}``."""
    error = details.get("error", details) if isinstance(details, Mapping) else None
    for item in (error or {}).get("details") or []:
        if isinstance(item, Mapping) and "retryDelay" in item:
            return duration_s(str(item["retryDelay"]))
    return None


def map_error(exc: BaseException) -> ProviderError:
    if isinstance(exc, errors.APIError):
        status = int(exc.code or 0)
        kind = kind_for_status(status) if status else ErrorKind.SERVER
        text = f"{exc.status or ''} {exc.message or ''}".upper()
        if kind == ErrorKind.BAD_REQUEST and ("SAFETY" in text or "PROHIBITED" in text):
            kind = ErrorKind.CONTENT_POLICY
        retry_after = None
        if kind == ErrorKind.RATE_LIMIT:
            headers = getattr(exc.response, "headers", None)
            retry_after = retry_after_s(headers) or _retry_info_s(exc.details)
        message = f"Gemini HTTP {status} {exc.status or ''}: {exc.message}"
        return ProviderError(message, kind=kind, status=status or None, retry_after=retry_after)
    if isinstance(exc, _TIMEOUTS):
        return ProviderError(f"Gemini timed out: {exc!r}", kind=ErrorKind.TIMEOUT)
    if isinstance(exc, _TRANSPORT):
        return ProviderError(f"cannot reach Gemini: {exc!r}", kind=ErrorKind.CONNECTION)
    return ProviderError(f"Gemini answer not understood: {exc!r}", kind=ErrorKind.MALFORMED)


@contextmanager
def _mapped_errors() -> Iterator[None]:
    try:
        yield
    except ProviderError:
        raise
    except _MAPPED as exc:
        raise map_error(exc) from exc
    except Exception as exc:
        # Anything else the SDK raises (a closed client, a bug in a new release) is still this
        # call's failure: transient, so it is retried and never leaves a unit waiting.
        raise ProviderError(f"Gemini SDK failed: {exc!r}", kind=ErrorKind.CONNECTION) from exc


def _usage(response: types.GenerateContentResponse, *, images_in: int, images_out: int) -> Usage:
    meta = response.usage_metadata
    if meta is None:
        return Usage(images_in=images_in, images_out=images_out)
    out = (meta.candidates_token_count or 0) + (meta.thoughts_token_count or 0)
    return Usage(
        tokens_in=meta.prompt_token_count or 0,
        tokens_out=out,  # thinking tokens are billed as output
        images_in=images_in,
        images_out=images_out,
    )


def _reason(value: Any) -> str:
    return str(getattr(value, "name", value) or "")


def _check_blocked(response: types.GenerateContentResponse, usage: Usage) -> types.Candidate:
    feedback = response.prompt_feedback
    if feedback is not None and feedback.block_reason:
        raise ProviderError(
            f"Gemini blocked the prompt ({_reason(feedback.block_reason)}"
            f"{': ' + feedback.block_reason_message if feedback.block_reason_message else ''})",
            kind=ErrorKind.CONTENT_POLICY,
            usage=usage,
        )
    if not response.candidates:
        raise ProviderError("Gemini returned no candidates", kind=ErrorKind.MALFORMED, usage=usage)
    candidate = response.candidates[0]
    reason = _reason(candidate.finish_reason)
    if reason in POLICY_REASONS:
        raise ProviderError(
            f"Gemini stopped the answer: finish reason {reason}"
            f"{': ' + candidate.finish_message if candidate.finish_message else ''}",
            kind=ErrorKind.CONTENT_POLICY,
            usage=usage,
        )
    return candidate


def _image_part(image: bytes) -> types.Part:
    mime = "image/jpeg" if image.startswith(b"\xff\xd8") else "image/png"
    return types.Part.from_bytes(data=image, mime_type=mime)


@lru_cache(maxsize=64)
def _schema_config(schema: type[BaseModel]) -> dict[str, Any]:
    """Gemini's ``response_schema`` (an OpenAPI subset) when the SDK can express the pydantic
    model; otherwise the JSON Schema as is (``response_json_schema``). Converted once per
    schema class (the conversion cost about 3% of an api worker's CPU when done per call)."""
    try:
        from google.genai import _transformers

        return {"response_schema": _transformers.t_schema(None, schema)}
    except Exception:  # a schema the subset cannot express
        return {"response_json_schema": schema.model_json_schema()}


class GeminiText(TextModel):
    provider = "gemini"

    def complete_json(self, request: TextRequest) -> TextResult:
        contents: list[Any] = [request.prompt.text, *map(_image_part, request.images)]
        config = types.GenerateContentConfig(
            response_mime_type="application/json",
            temperature=self.options.get("temperature"),
            automatic_function_calling=types.AutomaticFunctionCallingConfig(disable=True),
            **_schema_config(request.schema),
        )
        with _mapped_errors():
            response = client().models.generate_content(
                model=self.model, contents=contents, config=config
            )
        usage = _usage(response, images_in=len(request.images), images_out=0)
        candidate = _check_blocked(response, usage)
        parts = candidate.content.parts if candidate.content else None
        raw = "".join(p.text for p in parts or [] if p.text and not p.thought)
        if _reason(candidate.finish_reason) == "MAX_TOKENS":
            raise ProviderError(
                "Gemini answer cut off at the token limit", kind=ErrorKind.MALFORMED, usage=usage
            )
        data = parse_json_output(raw, request.schema, usage=usage)
        return TextResult(data=data, raw=raw, usage=usage)


class GeminiImage(ImageModel):
    """gemini-2.5-flash-image: the prompt plus up to three input images (edit) → one image.

    It has no mask input: a mask is sent as one more image, named as such in the prompt, when
    there is room for it.
    """

    provider = "gemini"
    max_input_images = 3

    def _aspect_ratio(self, size: tuple[int, int]) -> str:
        if "aspect_ratio" in self.options:
            return str(self.options["aspect_ratio"])
        width, height = size

        def distance(ratio: str) -> float:
            a, b = (int(x) for x in ratio.split(":"))
            return abs(a / b - width / height)

        return min(ASPECT_RATIOS, key=distance)

    def generate(self, request: ImageRequest) -> ImageResult:
        images = list(request.images)
        if len(images) > self.max_input_images:
            raise ProviderError(
                f"{self.model} takes at most {self.max_input_images} input images, "
                f"got {len(images)} (combine them with hilapp.imaging.fit_inputs)",
                kind=ErrorKind.BAD_REQUEST,
            )
        text = request.prompt.text
        if request.mask is not None and len(images) < self.max_input_images:
            images.append(request.mask)
            text += "\nThe last image is a mask: change only its white area."
        contents: list[Any] = [text, *map(_image_part, images)]
        config = types.GenerateContentConfig(
            response_modalities=["IMAGE"],
            automatic_function_calling=types.AutomaticFunctionCallingConfig(disable=True),
            image_config=types.ImageConfig(aspect_ratio=self._aspect_ratio(request.size)),
        )
        with _mapped_errors():
            response = client().models.generate_content(
                model=self.model, contents=contents, config=config
            )
        usage = _usage(response, images_in=len(images), images_out=1)
        candidate = _check_blocked(response, usage)
        for part in (candidate.content.parts if candidate.content else None) or []:
            if part.inline_data is not None and part.inline_data.data:
                try:
                    image = validated_png(part.inline_data.data, who="Gemini")
                except ProviderError as exc:
                    exc.usage = usage
                    raise
                return ImageResult(image=image, usage=usage)
        raise ProviderError(
            f"Gemini returned no image (finish reason {_reason(candidate.finish_reason)})",
            kind=ErrorKind.MALFORMED,
            usage=usage,
        )


TEXT_MODEL = GeminiText
IMAGE_MODEL = GeminiImage
