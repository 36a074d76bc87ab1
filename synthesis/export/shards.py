"""WebDataset shards: POSIX (ustar) tar, every member with the same mtime, owner and mode, so
the same samples in the same order always give the same bytes.

A shard is closed before a sample would push it past ``max_bytes`` (a sample larger than the
limit gets a shard of its own). Shards are hashed as they are written, for the manifest.
"""

from __future__ import annotations

import hashlib
import io
import tarfile
from collections.abc import Mapping
from pathlib import Path

FIXED_MTIME = 946684800  # 2000-01-01T00:00:00Z
BLOCK, RECORD = tarfile.BLOCKSIZE, tarfile.RECORDSIZE  # 512, 10240


def file_sha256(path: Path) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def closed_size(size: int) -> int:
    """The size of a tar holding ``size`` bytes of members, once its end blocks are written."""
    return -(-(size + 2 * BLOCK) // RECORD) * RECORD


class _HashedFile(io.FileIO):
    """A file that hashes what is written to it (a shard is not read back to be hashed)."""

    def __init__(self, path: Path) -> None:
        super().__init__(path, "wb")
        self.sha256 = hashlib.sha256()

    def write(self, data: bytes) -> int:  # type: ignore[override]
        self.sha256.update(data)
        return super().write(data)


class ShardWriter:
    """Write samples into ``<folder>/<prefix>-00000.tar``, ``-00001.tar``, …"""

    def __init__(self, folder: Path, prefix: str, *, max_bytes: int) -> None:
        self.folder = folder
        self.prefix = prefix
        self.max_bytes = max_bytes
        self.paths: list[Path] = []
        self.digests: dict[Path, str] = {}  # sha256 of each closed shard
        self._tar: tarfile.TarFile | None = None

    def write(self, key: str, members: Mapping[str, bytes]) -> Path:
        """Write one sample (``{extension: bytes}``, in the order given); return its shard."""
        if "." in key or "/" in key:
            raise ValueError(f"a sample key must not contain dots or slashes: {key!r}")
        # Each member takes a header block (keys are short) and its data in whole blocks.
        size = sum(BLOCK + len(data) + -len(data) % BLOCK for data in members.values())
        tar = self._tar
        if tar is None or (tar.offset and closed_size(tar.offset + size) > self.max_bytes):
            self.close()
            path = self.folder / f"{self.prefix}-{len(self.paths):05d}.tar"
            path.parent.mkdir(parents=True, exist_ok=True)
            handle = _HashedFile(path)
            tar = self._tar = tarfile.TarFile(fileobj=handle, mode="w", format=tarfile.USTAR_FORMAT)
            self.paths.append(path)
        for ext, data in members.items():
            info = tarfile.TarInfo(f"{key}.{ext}")  # uid, gid 0, no owner names, mode 0644
            info.size, info.mtime = len(data), FIXED_MTIME
            tar.addfile(info, io.BytesIO(data))
        return self.paths[-1]

    def close(self) -> None:
        if self._tar is not None:
            self._tar.close()  # writes the end-of-archive blocks
            handle = self._tar.fileobj
            assert isinstance(handle, _HashedFile)
            handle.close()
            self.digests[self.paths[-1]] = handle.sha256.hexdigest()
            self._tar = None

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
