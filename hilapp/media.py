"""Media through authorised URLs: every image URL that a page or the API hands out is signed and
expires; nothing under ``/media/`` is served without a valid signature.

One mechanism, two storages (``MEDIA_STORAGE_BACKEND`` picks, ``hilapp/settings/base.py``):

- local files (the default, embedded mode included): ``SignedFileSystemStorage.url`` gives
  ``/media/<name>?exp=<unix time>&sig=<HMAC of name and exp>``; ``media_serve`` checks the
  signature and streams the file, or hands it to nginx (``X-Accel-Redirect``) when
  ``HILAPP_MEDIA_X_ACCEL_PREFIX`` is set;
- S3-compatible buckets: the bucket's presigned URLs (``hilapp.s3.S3MediaStorage``).

Callers never build a media URL themselves: they call ``media_url(name)``. A URL works for
whoever holds it until it expires (``HILAPP_MEDIA_URL_TTL_S``): pages and API rows are rendered
for someone already authorised to see them, and the URL carries that authorisation.
"""

from __future__ import annotations

import math
import mimetypes
import time
from urllib.parse import quote, urlencode

from django.conf import settings
from django.core import signing
from django.core.exceptions import SuspiciousFileOperation
from django.core.files.storage import FileSystemStorage, default_storage
from django.http import FileResponse, Http404, HttpRequest, HttpResponse, HttpResponseForbidden
from django.http.response import HttpResponseBase
from django.views.decorators.http import require_safe

SALT = "hilapp.media"
# Expiry times are rounded up to a whole minute, so a page rendered twice within a minute hands
# out the same URLs and the browser's cache keeps working; a URL lives TTL to TTL + 59 s.
EXPIRY_STEP_S = 60


class StorageUnavailable(OSError):
    """The media storage could not be reached, after its own retries; nothing was written.

    A pipeline step that meets it leaves its unit for the reconciler, which sends it again once
    its lease has run out."""


def media_url(name: str) -> str:
    """The signed, expiring URL of the stored file ``name`` ("" when there is none)."""
    return default_storage.url(name) if name else ""


def is_safe_name(name: str) -> bool:
    """A storage name we may sign or serve: relative, no ``..``/``.``/empty parts, no NUL."""
    if not name or "\x00" in name or "\\" in name or name.startswith("/"):
        return False
    return all(part not in ("", ".", "..") for part in name.split("/"))


def _signer() -> signing.Signer:
    # Signer honours SECRET_KEY_FALLBACKS, so rotating the key does not break live URLs.
    return signing.Signer(salt=SALT)


def _payload(name: str, expires: int) -> str:
    return f"{name}\n{expires}"


def sign(name: str, *, now: float | None = None) -> tuple[int, str]:
    """(expiry as unix time, signature) for ``name``, valid for the configured TTL."""
    now = time.time() if now is None else now
    ttl: int = settings.HILAPP_MEDIA_URL_TTL_S
    expires = math.ceil((now + ttl) / EXPIRY_STEP_S) * EXPIRY_STEP_S
    return expires, _signer().signature(_payload(name, expires))


def verify(name: str, expires: str, signature: str, *, now: float | None = None) -> int | None:
    """Seconds left until the URL expires, or None when the signature is missing/bad/expired."""
    if not (is_safe_name(name) and expires.isdigit() and signature):
        return None
    try:
        _signer().unsign(f"{_payload(name, int(expires))}{_signer().sep}{signature}")
    except signing.BadSignature:
        return None
    left = int(expires) - int(time.time() if now is None else now)
    return left if left > 0 else None


class SignedFileSystemStorage(FileSystemStorage):
    """Local files whose URLs are signed and expire (served by ``media_serve``)."""

    def url(self, name: str | None) -> str:
        if name is None or not is_safe_name(name):
            raise SuspiciousFileOperation(f"refusing to sign the media name {name!r}")
        expires, signature = sign(name)
        return f"{super().url(name)}?{urlencode({'exp': expires, 'sig': signature})}"


def _forbidden() -> HttpResponse:
    return HttpResponseForbidden(
        "This media URL has no valid signature or has expired; reload the page that gave it.",
        content_type="text/plain",
    )


@require_safe
def media_serve(request: HttpRequest, name: str) -> HttpResponseBase:
    """Serve one stored file to whoever holds a valid signed URL; 403 otherwise."""
    left = verify(name, request.GET.get("exp", ""), request.GET.get("sig", ""))
    if left is None:
        return _forbidden()
    content_type = mimetypes.guess_type(name)[0] or "application/octet-stream"
    accel_prefix: str = settings.HILAPP_MEDIA_X_ACCEL_PREFIX
    response: HttpResponseBase
    if accel_prefix:
        # nginx serves the bytes from its ``internal`` location; Django only said yes.
        response = HttpResponse(content_type=content_type)
        response["X-Accel-Redirect"] = f"{accel_prefix.rstrip('/')}/{quote(name)}"
    else:
        try:
            handle = default_storage.open(name, "rb")
        except (FileNotFoundError, IsADirectoryError):
            raise Http404("no such media file") from None
        response = FileResponse(handle, content_type=content_type)
    # The URL is a capability: shared caches must not keep it, the browser may until it expires.
    response["Cache-Control"] = f"private, max-age={left}"
    return response
