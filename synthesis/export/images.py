"""Stored images for an export: read through Django's storage API (the local disk and S3 alike)
on a pool of threads, checked against their stored sha256, and handed back in export order.

A 1024² frame is about a megabyte: reading, hashing and writing it release the GIL, so threads
overlap them (and the latency of each request on S3).
"""

from __future__ import annotations

import hashlib
from collections import deque
from collections.abc import Callable, Generator, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

from django.core.files.storage import default_storage

from synthesis.export.options import ExportError

Item = TypeVar("Item")
Result = TypeVar("Result")


def read_stored(name: str, *, what: str, sha256: str = "") -> bytes:
    """A stored image, refused unless it matches ``sha256`` (if given); errors name ``what``."""
    try:
        with default_storage.open(name, "rb") as handle:
            data: bytes = handle.read()
    except OSError as exc:
        raise ExportError(f"{what}: cannot read stored image {name} ({exc})") from None
    if sha256 and hashlib.sha256(data).hexdigest() != sha256:
        raise ExportError(f"{what}: stored image does not match its sha256 (storage corrupted?)")
    return data


def stored_size(name: str, *, what: str) -> int:
    """The size of a stored image, without reading it (an export that leaves no image)."""
    try:
        return int(default_storage.size(name))
    except OSError as exc:
        raise ExportError(f"{what}: cannot read stored image {name} ({exc})") from None


def in_order(
    items: Iterable[Item], work: Callable[[Item], Result], *, threads: int
) -> Generator[tuple[Item, Result], None, None]:
    """``(item, work(item))`` for each item, in order, with up to ``2 × threads`` calls running or
    done ahead; ``items`` is iterated in the calling thread (it may hold a database cursor). The
    first failure is raised in order; closing the generator cancels the calls not started."""
    items = iter(items)
    for first in items:
        # The first call runs alone: a storage that sets itself up on first use does it once,
        # not once in each thread (django-storages' S3 storage: a boto3 session per thread,
        # which tripled the CPU time of a small export).
        yield first, work(first)
        break
    window: deque[tuple[Item, Future[Result]]] = deque()
    with ThreadPoolExecutor(threads, thread_name_prefix="export-read") as pool:
        try:
            for item in items:
                window.append((item, pool.submit(work, item)))
                if len(window) >= 2 * threads:
                    first, future = window.popleft()
                    yield first, future.result()
            while window:
                first, future = window.popleft()
                yield first, future.result()
        finally:
            for _, future in window:
                future.cancel()
