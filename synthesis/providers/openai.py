"""OpenAI: GPT-4o chat with images and JSON-schema output; gpt-image-1 generate and edit.

Uses the official SDK with its own retries off (``max_retries=0``): retries, back-off and
``Retry-After`` are ``calls.py``'s job, so each try is one ledger row. SDK exceptions become
``ProviderError`` kinds here and nowhere else.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from functools import lru_cache
from typing import Any

import openai
from django.conf import settings
from pydantic import BaseModel

from hilapp.imaging import ImageRejected, to_png, validate_image_upload
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
    kind_for_status,
    parse_json_output,
    retry_after_s,
)
from synthesis.providers.sdk_clients import connection_limits, shared_client

# Error codes OpenAI uses for prompts or images its safety system refuses.
POLICY_CODES = frozenset(
    {"content_policy_violation", "moderation_blocked", "content_filter", "safety_violation"}
)
# gpt-image-1 renders these sizes; a request's size is mapped to the closest aspect ratio.
IMAGE_SIZES = {(1024, 1024): "1024x1024", (1536, 1024): "1536x1024", (1024, 1536): "1024x1536"}


def _client(api_key: str, base_url: str | None, timeout_s: float) -> openai.OpenAI:
    def build() -> openai.OpenAI:
        http = openai.DefaultHttpxClient(limits=connection_limits(), timeout=timeout_s)
        return openai.OpenAI(
            api_key=api_key,
            base_url=base_url,
            timeout=timeout_s,
            max_retries=0,
            http_client=http,
        )

    return shared_client(("openai", api_key, base_url, timeout_s), build)


def client() -> openai.OpenAI:
    if not settings.OPENAI_API_KEY:
        raise ProviderError("OPENAI_API_KEY is not set", kind=ErrorKind.UNAVAILABLE, permanent=True)
    return _client(settings.OPENAI_API_KEY, settings.OPENAI_BASE_URL, settings.PROVIDER_TIMEOUT_S)


def _error_code(exc: openai.APIError) -> str:
    body = exc.body
    if isinstance(body, Mapping) and isinstance(body.get("error"), Mapping):
        body = body["error"]
    code = body.get("code") if isinstance(body, Mapping) else None
    return str(code or exc.code or "")


def map_error(exc: openai.OpenAIError) -> ProviderError:
    """One SDK exception → one ProviderError with the kind the retry policy needs."""
    if isinstance(exc, openai.APITimeoutError):
        return ProviderError(f"OpenAI timed out: {exc}", kind=ErrorKind.TIMEOUT)
    if isinstance(exc, openai.APIConnectionError):
        return ProviderError(f"cannot reach OpenAI: {exc}", kind=ErrorKind.CONNECTION)
    if isinstance(exc, openai.APIStatusError):
        status = exc.status_code
        code = _error_code(exc)
        kind = kind_for_status(status)
        if code in POLICY_CODES:
            kind = ErrorKind.CONTENT_POLICY
        retry_after = retry_after_s(exc.response.headers) if kind != ErrorKind.BAD_REQUEST else None
        message = f"OpenAI HTTP {status}{f' {code}' if code else ''}: {exc.message}"
        return ProviderError(message, kind=kind, status=status, retry_after=retry_after)
    if isinstance(exc, openai.APIResponseValidationError):
        return ProviderError(f"OpenAI answer not understood: {exc}", kind=ErrorKind.MALFORMED)
    return ProviderError(f"OpenAI: {exc}", kind=ErrorKind.CONNECTION)


@contextmanager
def _mapped_errors() -> Iterator[None]:
    try:
        yield
    except ProviderError:
        raise
    except openai.OpenAIError as exc:
        raise map_error(exc) from exc
    except json.JSONDecodeError as exc:  # a 200 whose body is not JSON
        raise ProviderError(f"OpenAI answer is not JSON: {exc}", kind=ErrorKind.MALFORMED) from exc
    except Exception as exc:
        # Anything else the SDK raises is still this call's failure: transient, so it is
        # retried and never leaves a unit waiting for its lease.
        raise ProviderError(f"OpenAI SDK failed: {exc!r}", kind=ErrorKind.CONNECTION) from exc


@lru_cache(maxsize=64)
def _response_format(schema: type[BaseModel]) -> dict[str, Any]:
    try:
        from openai.lib._pydantic import to_strict_json_schema

        json_schema, strict = to_strict_json_schema(schema), True
    except Exception:  # a schema the strict subset cannot express: ask for it, unstrict
        json_schema, strict = schema.model_json_schema(), False
    return {
        "type": "json_schema",
        "json_schema": {"name": schema.__name__, "schema": json_schema, "strict": strict},
    }


def _data_url(image: bytes) -> str:
    mime = "image/jpeg" if image.startswith(b"\xff\xd8") else "image/png"
    if image[:4] == b"RIFF" and image[8:12] == b"WEBP":
        mime = "image/webp"
    return f"data:{mime};base64,{base64.b64encode(image).decode()}"


def decode_image(b64: str | None, *, who: str) -> bytes:
    """Base64 image from an answer → validated PNG bytes; a truncated image is MALFORMED."""
    if not b64:
        raise ProviderError(f"{who} returned no image", kind=ErrorKind.MALFORMED)
    try:
        data = base64.b64decode(b64, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ProviderError(f"{who} image is not base64: {exc}", kind=ErrorKind.MALFORMED) from exc
    return validated_png(data, who=who)


def validated_png(data: bytes, *, who: str) -> bytes:
    try:
        image = validate_image_upload(data)
    except ImageRejected as exc:
        raise ProviderError(f"{who} image unusable: {exc}", kind=ErrorKind.MALFORMED) from exc
    return data if data.startswith(b"\x89PNG") else to_png(image)


class OpenAIText(TextModel):
    provider = "openai"

    def complete_json(self, request: TextRequest) -> TextResult:
        content: list[dict[str, Any]] = [{"type": "text", "text": request.prompt.text}]
        detail = self.options.get("image_detail", "auto")
        content += [
            {"type": "image_url", "image_url": {"url": _data_url(image), "detail": detail}}
            for image in request.images
        ]
        params: dict[str, Any] = {
            "model": self.model,
            "messages": [{"role": "user", "content": content}],
            "response_format": _response_format(request.schema),
        }
        if "temperature" in self.options:
            params["temperature"] = float(self.options["temperature"])
        with _mapped_errors():
            completion = client().chat.completions.create(**params)
        u = completion.usage
        usage = Usage(
            tokens_in=u.prompt_tokens if u else 0,
            tokens_out=u.completion_tokens if u else 0,
            images_in=len(request.images),
        )
        if not completion.choices:
            raise ProviderError("OpenAI returned no choices", kind=ErrorKind.MALFORMED, usage=usage)
        choice = completion.choices[0]
        message = choice.message
        if getattr(message, "refusal", None):
            raise ProviderError(
                f"OpenAI refused: {message.refusal}", kind=ErrorKind.CONTENT_POLICY, usage=usage
            )
        if choice.finish_reason == "content_filter":
            raise ProviderError(
                "OpenAI content filter stopped the answer",
                kind=ErrorKind.CONTENT_POLICY,
                usage=usage,
            )
        raw = message.content or ""
        if choice.finish_reason == "length":
            raise ProviderError(
                "OpenAI answer cut off at the token limit", kind=ErrorKind.MALFORMED, usage=usage
            )
        data = parse_json_output(raw, request.schema, usage=usage)
        return TextResult(data=data, raw=raw, usage=usage)


class OpenAIImage(ImageModel):
    """gpt-image-1: no input images → generate; input images (and a mask) → edit."""

    provider = "openai"
    max_input_images = 16

    def _size(self, size: tuple[int, int]) -> str:
        if "size" in self.options:
            return str(self.options["size"])
        width, height = size
        ratio = width / height
        best = min(IMAGE_SIZES, key=lambda wh: abs(wh[0] / wh[1] - ratio))
        return IMAGE_SIZES[best]

    def generate(self, request: ImageRequest) -> ImageResult:
        common: dict[str, Any] = {
            "model": self.model,
            "prompt": request.prompt.text,
            "size": self._size(request.size),
            "n": 1,
        }
        if "quality" in self.options:
            common["quality"] = self.options["quality"]
        with _mapped_errors():
            if request.images:
                files = [
                    (f"input-{i}.png", io.BytesIO(image), "image/png")
                    for i, image in enumerate(request.images)
                ]
                if request.mask is not None:
                    common["mask"] = ("mask.png", io.BytesIO(request.mask), "image/png")
                response = client().images.edit(image=files, **common)
            else:
                response = client().images.generate(**common)
        u = getattr(response, "usage", None)
        usage = Usage(
            tokens_in=int(getattr(u, "input_tokens", 0) or 0),
            tokens_out=int(getattr(u, "output_tokens", 0) or 0),
            images_in=len(request.images),
            images_out=1,
        )
        data = response.data or []
        try:
            image = decode_image(data[0].b64_json if data else None, who="OpenAI")
        except ProviderError as exc:
            exc.usage = usage
            raise
        return ImageResult(image=image, usage=usage)


TEXT_MODEL = OpenAIText
IMAGE_MODEL = OpenAIImage
