"""Media in an S3-compatible bucket (the ``s3`` extra: django-storages + boto3).

A bucket that cannot be reached for a moment costs no work: botocore retries each request in its
``standard`` mode (``AWS_MAX_ATTEMPTS`` tries in all, ten by default, with exponential backoff
and jitter: up to ~25 s in all for connection errors, longer when the store throttles), which
covers connection errors, throttling and 5xx answers. Past that, a write, an existence check or
an open raises ``StorageUnavailable`` naming the bucket and its endpoint; a pipeline step that
meets it leaves its unit for the reconciler.

URLs are the bucket's presigned URLs (``querystring_auth`` on, expiring after
``HILAPP_MEDIA_URL_TTL_S``; ``hilapp.media`` explains why every media URL is signed). When the
processes reach the bucket at an address browsers cannot (``http://s3:9000`` inside a container
network), ``AWS_S3_PUBLIC_ENDPOINT_URL`` names the address browsers use: URLs are signed for that
host (a presigned URL's signature covers its host, so rewriting the URL afterwards would break it).
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from botocore.config import Config
from botocore.exceptions import ClientError, HTTPClientError
from botocore.exceptions import ConnectionError as BotoConnectionError
from django.core.exceptions import SuspiciousFileOperation
from storages.backends.s3 import S3Storage
from storages.utils import clean_name

from hilapp.media import StorageUnavailable, is_safe_name

T = TypeVar("T")


def _is_unreachable(exc: Exception) -> bool:
    """A connection that failed or broke, or a server error; not a 403 or 404."""
    if isinstance(exc, ClientError):
        return int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)) >= 500
    return True


def _reaching(method: Callable[..., T]) -> Callable[..., T]:
    """Turn "the bucket could not be reached" (after botocore's retries) into StorageUnavailable."""

    @functools.wraps(method)
    def wrapper(self: S3MediaStorage, *args: Any, **kwargs: Any) -> T:
        try:
            return method(self, *args, **kwargs)
        except (BotoConnectionError, HTTPClientError, ClientError) as exc:
            if not _is_unreachable(exc):
                raise
            raise StorageUnavailable(
                f"the media bucket {self.bucket_name!r} at {self.endpoint_url or 'AWS'} could "
                f"not be reached after {self.max_attempts} attempts: {exc}"
            ) from exc

    return wrapper


class S3MediaStorage(S3Storage):
    """S3Storage whose URLs are always presigned, optionally for a public endpoint."""

    def __init__(self, **settings: Any) -> None:
        super().__init__(**settings)
        self.querystring_auth = True  # never hand out an unsigned bucket URL
        self._public_clients = threading.local()
        self.client_config: Config = self.client_config.merge(
            Config(retries={"mode": "standard", "total_max_attempts": self.max_attempts})
        )

    def get_default_settings(self) -> dict[str, Any]:
        return {**super().get_default_settings(), "public_endpoint_url": None, "max_attempts": 10}

    _save = _reaching(S3Storage._save)
    _open = _reaching(S3Storage._open)
    exists = _reaching(S3Storage.exists)
    delete = _reaching(S3Storage.delete)

    # Picklable like S3Storage (per-thread clients are rebuilt, never shipped).
    def __getstate__(self) -> dict[str, Any]:
        state: dict[str, Any] = super().__getstate__()
        state.pop("_public_clients", None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        self._public_clients = threading.local()

    def _signing_client(self) -> Any:
        if not self.public_endpoint_url:
            return self.connection.meta.client
        client = getattr(self._public_clients, "client", None)
        if client is None:
            client = self._create_session().client(
                "s3",
                region_name=self.region_name,
                endpoint_url=self.public_endpoint_url,
                config=self.client_config,
                verify=self.verify,
            )
            self._public_clients.client = client
        return client

    def url(
        self,
        name: str,
        parameters: dict[str, Any] | None = None,
        expire: int | None = None,
        http_method: str | None = None,
    ) -> str:
        if not is_safe_name(name):
            raise SuspiciousFileOperation(f"refusing to sign the media name {name!r}")
        params = {
            **(parameters or {}),
            "Bucket": self.bucket_name,
            "Key": self._normalize_name(clean_name(name)),
        }
        url: str = self._signing_client().generate_presigned_url(
            "get_object",
            Params=params,
            ExpiresIn=self.querystring_expire if expire is None else expire,
            HttpMethod=http_method,
        )
        return url
