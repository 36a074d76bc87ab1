"""The provider interfaces: roles, requests, results and the one error type.

Two capabilities cover the seven roles: a *text model* answers a prompt (with optional images)
with JSON validated against a pydantic schema; an *image model* renders or edits an image from a
prompt and optional input images. Adapters (``sim``, ``openai``, ``gemini``, ``diffusers``)
implement them; nothing else in the pipeline knows which provider it talks to.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, ClassVar

from pydantic import BaseModel

from synthesis.prompts import RenderedPrompt


class Role(StrEnum):
    PLANNER = "planner"
    JUDGE = "judge"
    ARBITRATOR = "arbitrator"
    CHARACTER_RENDERER = "character_renderer"
    REFERENCE_EDITOR = "reference_editor"
    FRAME_SYNTHESIZER = "frame_synthesizer"
    LOCAL_EDITOR = "local_editor"

    @property
    def is_text(self) -> bool:
        return self in TEXT_ROLES


TEXT_ROLES = frozenset({Role.PLANNER, Role.JUDGE, Role.ARBITRATOR})
IMAGE_ROLES = frozenset(set(Role) - TEXT_ROLES)


class ErrorKind(StrEnum):
    RATE_LIMIT = "rate_limit"
    SERVER = "server"
    TIMEOUT = "timeout"
    CONNECTION = "connection"
    MALFORMED = "malformed"  # an answer that does not parse or fails its schema
    BAD_REQUEST = "bad_request"
    AUTH = "auth"
    CONTENT_POLICY = "content_policy"
    BUDGET = "budget"
    UNAVAILABLE = "unavailable"  # circuit open / provider not configured


PERMANENT_KINDS = frozenset(
    {ErrorKind.BAD_REQUEST, ErrorKind.AUTH, ErrorKind.CONTENT_POLICY, ErrorKind.BUDGET}
)


class ProviderError(Exception):
    """A failed provider call. ``permanent`` says whether asking again can help."""

    def __init__(
        self,
        message: str,
        *,
        kind: ErrorKind,
        retry_after: float | None = None,
        status: int | None = None,
        usage: Usage | None = None,
        permanent: bool | None = None,
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.retry_after = retry_after
        self.status = status
        # What the failed call consumed (and is billed for), e.g. a malformed or refused answer.
        self.usage = usage
        # Overrides the kind's default (e.g. UNAVAILABLE for missing weights: no retry helps).
        self._permanent = permanent

    @property
    def permanent(self) -> bool:
        if self._permanent is not None:
            return self._permanent
        return self.kind in PERMANENT_KINDS

    def __str__(self) -> str:
        return f"{self.kind}: {self.args[0]}"


@dataclass
class Usage:
    tokens_in: int = 0
    tokens_out: int = 0
    images_in: int = 0
    images_out: int = 0


@dataclass
class TextRequest:
    role: Role
    prompt: RenderedPrompt
    schema: type[BaseModel]
    images: Sequence[bytes] = ()
    # A stable identity of this request (e.g. "character:12:attempt:2"): deterministic providers
    # (the simulator) draw their randomness from it and the seed.
    seed_key: str = ""
    # Structured facts behind the prompt. Real providers ignore them; the simulator reads them.
    subject: Mapping[str, Any] = field(default_factory=dict)
    try_number: int = 0  # set by the caller on each retry of the same request


@dataclass
class TextResult:
    data: BaseModel
    raw: str
    usage: Usage


@dataclass
class ImageRequest:
    role: Role
    prompt: RenderedPrompt
    images: Sequence[bytes] = ()
    mask: bytes | None = None
    size: tuple[int, int] = (1024, 1024)
    seed_key: str = ""
    subject: Mapping[str, Any] = field(default_factory=dict)
    try_number: int = 0


@dataclass
class ImageResult:
    image: bytes  # PNG bytes
    usage: Usage


class ProviderModel(ABC):
    """One model of one provider, configured for use (a client, a loaded pipeline, …)."""

    provider: ClassVar[str]

    def __init__(self, model: str, options: Mapping[str, Any] | None = None) -> None:
        self.model = model
        self.options = dict(options or {})


class TextModel(ProviderModel):
    """planner, judge, arbitrator."""

    @abstractmethod
    def complete_json(self, request: TextRequest) -> TextResult:
        """Answer with JSON valid for ``request.schema``; raise ProviderError otherwise."""


class ImageModel(ProviderModel):
    """character_renderer, reference_editor, frame_synthesizer, local_editor."""

    # How many input images one request may carry (None: no limit the pipeline must respect).
    max_input_images: ClassVar[int | None] = None

    @abstractmethod
    def generate(self, request: ImageRequest) -> ImageResult:
        """Render (no input images) or edit (input images, optional mask); return a PNG."""


def kind_for_status(status: int) -> ErrorKind:
    """The error kind of an HTTP status returned by a provider's API."""
    if status == 429:
        return ErrorKind.RATE_LIMIT
    if status in (401, 403):
        return ErrorKind.AUTH
    if status == 408:
        return ErrorKind.TIMEOUT
    if status == 409 or status >= 500:  # 409: a lock conflict the vendors say to retry
        return ErrorKind.SERVER
    return ErrorKind.BAD_REQUEST


def duration_s(text: str) -> float | None:
    """``"1.5"``, ``"20ms"``, ``"6m0s"``, ``"1h2m3.5s"`` → seconds (rate-limit reset headers)."""
    import re

    text = text.strip()
    try:
        return max(0.0, float(text))
    except ValueError:
        pass
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", text)
    if not parts or "".join(n + u for n, u in parts) != text:
        return None
    scale = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
    return sum(float(n) * scale[u] for n, u in parts)


def retry_after_s(headers: Mapping[str, str] | None) -> float | None:
    """Seconds to wait before asking again, from ``Retry-After`` (seconds or an HTTP date),
    ``retry-after-ms`` or the ``x-ratelimit-reset-*`` headers; None when none is given."""
    if not headers:
        return None
    lower = {k.lower(): v for k, v in headers.items()}
    if (ms := lower.get("retry-after-ms")) is not None:
        try:
            return max(0.0, float(ms) / 1000)
        except ValueError:
            pass
    if (value := lower.get("retry-after")) is not None:
        seconds = duration_s(value)
        if seconds is not None:
            return seconds
        from datetime import UTC, datetime
        from email.utils import parsedate_to_datetime

        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            when = None
        if when is not None:
            if when.tzinfo is None:
                when = when.replace(tzinfo=UTC)
            return max(0.0, (when - datetime.now(UTC)).total_seconds())
    resets = [
        s
        for key in ("x-ratelimit-reset-requests", "x-ratelimit-reset-tokens")
        if (v := lower.get(key)) is not None and (s := duration_s(v)) is not None
    ]
    return max(resets) if resets else None


def parse_json_output(
    raw: str, schema: type[BaseModel], *, usage: Usage | None = None
) -> BaseModel:
    """Validate a model's JSON answer, or raise a MALFORMED ProviderError saying why.

    ``usage``: what the unparseable answer still cost, carried on the error for the ledger.
    """
    from pydantic import ValidationError

    text = raw.strip()
    if text.startswith("```"):
        # Models sometimes fence JSON even when asked not to.
        text = text.strip("`")
        text = text[text.find("\n") + 1 :] if "\n" in text else text
    try:
        return schema.model_validate_json(text)
    except ValidationError as exc:
        raise ProviderError(
            f"answer does not match {schema.__name__}: {exc.errors()[:3]}",
            kind=ErrorKind.MALFORMED,
            usage=usage,
        ) from exc
