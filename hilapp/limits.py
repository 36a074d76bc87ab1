"""Request limits, in one place, for the API and the pages alike.

``RequestLimitsMiddleware`` runs before anything reads the request:

- a body whose ``Content-Length`` is over the limit is refused with 413 before a byte of it is
  read (``HILAPP_MAX_UPLOAD_BYTES`` for multipart uploads, ``HILAPP_MAX_BODY_BYTES`` for every
  other body). Django reads at most ``Content-Length`` bytes of a request (a body without one
  reads as empty), so a 400 MB upload never reaches memory or a temporary file;
- a path, query string or text body that is not UTF-8, or holds a NUL character (PostgreSQL
  refuses those in text), is refused with 400;
- a JSON body nested deeper than ``HILAPP_MAX_JSON_DEPTH`` is refused with 400 (Python's
  parser would otherwise recurse until it fails);
- a login POST from a locked-out address or for a locked-out account gets 429
  (``hilapp.lockouts``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from urllib.parse import unquote_to_bytes

from django.conf import settings
from django.http import HttpRequest, HttpResponse

from hilapp.lockouts import login_lockout

_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_BRACKETS = re.compile(rb"[\[\]{}]")


class Refused(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def json_depth(body: bytes) -> int:
    """The deepest nesting of objects and arrays in ``body`` (brackets inside strings ignored)."""
    depth = deepest = 0
    for bracket in _BRACKETS.findall(_JSON_STRING.sub(b"", body)):
        if bracket in b"[{":
            depth += 1
            deepest = max(deepest, depth)
        else:
            depth -= 1
    return deepest


def _check_text(raw: bytes, where: str) -> None:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise Refused(400, f"The {where} is not valid UTF-8.") from None
    if "\x00" in text:
        raise Refused(400, f"The {where} contains a NUL character.")


def _content_length(request: HttpRequest) -> int:
    raw = request.META.get("CONTENT_LENGTH") or "0"
    try:
        length = int(raw)
    except ValueError:
        raise Refused(400, "Content-Length is not a number.") from None
    if length < 0:
        raise Refused(400, "Content-Length is negative.")
    return length


def check_request(request: HttpRequest) -> None:
    """Raise ``Refused`` for a request over a limit (reads the body only when it is small)."""
    if "\x00" in request.path:
        raise Refused(400, "The URL path contains a NUL character.")
    query = request.META.get("QUERY_STRING", "")
    if query:
        _check_text(unquote_to_bytes(query.encode("latin-1", "replace")), "query string")
    length = _content_length(request)
    if not length:
        return
    content_type = request.content_type or ""
    if content_type.startswith("multipart/"):
        if length > settings.HILAPP_MAX_UPLOAD_BYTES:
            limit = settings.HILAPP_MAX_UPLOAD_BYTES
            raise Refused(413, f"The upload is over {limit} bytes; nothing was read.")
        return
    if length > settings.HILAPP_MAX_BODY_BYTES:
        raise Refused(413, f"The request body is over {settings.HILAPP_MAX_BODY_BYTES} bytes.")
    if content_type == "application/x-www-form-urlencoded":
        _check_text(unquote_to_bytes(request.body.replace(b"+", b" ")), "form body")
    elif content_type == "application/json" or content_type.endswith("+json"):
        body = request.body
        _check_text(body, "JSON body")
        if b"\\u0000" in body:
            raise Refused(400, "The JSON body contains a NUL character.")
        if json_depth(body) > settings.HILAPP_MAX_JSON_DEPTH:
            raise Refused(
                400, f"The JSON body is nested deeper than {settings.HILAPP_MAX_JSON_DEPTH} levels."
            )


def refusal(request: HttpRequest, refused: Refused) -> HttpResponse:
    if request.path.startswith("/api/"):
        return HttpResponse(
            json.dumps({"detail": refused.message}),
            status=refused.status,
            content_type="application/json",
        )
    return HttpResponse(
        refused.message + "\n", status=refused.status, content_type="text/plain; charset=utf-8"
    )


class RequestLimitsMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        try:
            check_request(request)
        except Refused as refused:
            return refusal(request, refused)
        locked = login_lockout(request)
        if locked is not None:
            return locked
        return self.get_response(request)
