"""WebDataset shards: POSIX (ustar) tar, byte-identical for the same samples.

Member headers are ``tarfile``'s, each with the same mtime, owner and mode, so the same
samples in the same order always give the same bytes. A shard is closed before a sample would
push it past ``max_bytes`` (a single sample larger than the limit gets a shard of its own).
Shards are hashed as they are written, for the manifest.
"""

from __future__ import annotations

import hashlib
import tarfile
from collections.abc import Mapping
from pathlib import Path
from typing import BinaryIO

FIXED_MTIME = 946684800  # 2000-01-01T00:00:00Z
BLOCK, RECORD = tarfile.BLOCKSIZE, tarfile.RECORDSIZE  # 512, 10240


def file_sha256(path: Path) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def member_bytes(size: int) -> int:
    """Bytes a member of ``size`` bytes takes in a tar: a header (keys are short: one block)
    and its data padded to whole blocks."""
    return BLOCK + size + -size % BLOCK


def closed_size(size: int) -> int:
    """The size of a tar holding ``size`` bytes of members, once its end blocks are written."""
    return -(-(size + 2 * BLOCK) // RECORD) * RECORD


def check_key(key: str) -> None:
    if "." in key or "/" in key:
        raise ValueError(f"a sample key must not contain dots or slashes: {key!r}")


class ShardWriter:
    """Write samples into ``<folder>/<prefix>-00000.tar``, ``-00001.tar``, …"""

    def __init__(self, folder: Path, prefix: str, *, max_bytes: int) -> None:
        self.folder = folder
        self.prefix = prefix
        self.max_bytes = max_bytes
        self.paths: list[Path] = []
        self.digests: dict[Path, str] = {}  # sha256 of each closed shard
        self._file: BinaryIO | None = None
        self._sha256 = hashlib.sha256()
        self._size = 0

    def write(self, key: str, members: Mapping[str, bytes]) -> Path:
        """Write one sample (``{extension: bytes}``, in the order given); return its shard."""
        check_key(key)
        size = sum(member_bytes(len(data)) for data in members.values())
        if self._file is None or (self._size and closed_size(self._size + size) > self.max_bytes):
            self._open_next()
        for ext, data in members.items():
            info = tarfile.TarInfo(f"{key}.{ext}")  # uid, gid 0, no owner names, mode 0644
            info.size, info.mtime = len(data), FIXED_MTIME
            self._put(info.tobuf(tarfile.USTAR_FORMAT, "utf-8", "strict"))
            self._put(data)  # written as it is, not copied through a file object
            self._put(bytes(-len(data) % BLOCK))
        return self.paths[-1]

    def _put(self, data: bytes) -> None:
        assert self._file is not None
        self._sha256.update(data)
        self._file.write(data)
        self._size += len(data)

    def _open_next(self) -> None:
        self._finish()
        path = self.folder / f"{self.prefix}-{len(self.paths):05d}.tar"
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(path, "wb")  # noqa: SIM115 - closed by _finish
        self._sha256, self._size = hashlib.sha256(), 0
        self.paths.append(path)

    def _finish(self) -> None:
        if self._file is not None:
            self._put(bytes(closed_size(self._size) - self._size))  # the end-of-archive blocks
            self._file.close()
            self.digests[self.paths[-1]] = self._sha256.hexdigest()
            self._file = None

    def close(self) -> list[Path]:
        self._finish()
        return self.paths

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
