"""A WebDataset shard writer: plain POSIX tar, byte-identical for the same samples.

Members are written straight to the file (no sample is kept after it is written), with a fixed
mtime, owner and mode, so that the same samples in the same order always give the same bytes.
A shard is closed before a sample would push it past ``max_bytes`` (a single sample larger than
the limit gets a shard of its own).
"""

from __future__ import annotations

import hashlib
import tarfile
from collections.abc import Mapping
from pathlib import Path
from typing import BinaryIO

BLOCK = tarfile.BLOCKSIZE  # 512
RECORD = tarfile.RECORDSIZE  # 10240: tar files are padded to a whole record
FIXED_MTIME = 946684800  # 2000-01-01T00:00:00Z


def _padded(size: int) -> int:
    return (size + BLOCK - 1) // BLOCK * BLOCK


def sample_tar_bytes(members: Mapping[str, bytes], key: str) -> int:
    """Bytes a sample takes in a tar (headers and padded data; names are short: one header)."""
    return sum(BLOCK + _padded(len(data)) for data in members.values())


def _octal(value: int, width: int) -> bytes:
    """A tar number field as ``tarfile`` writes it: zero-padded octal and a NUL."""
    return b"%0*o\0" % (width - 1, value)


# The constant part of every member header (POSIX ustar, as tarfile.USTAR_FORMAT writes it);
# only the name, the size and the checksum change from member to member.
_MODE, _OWNER = _octal(0o644, 8), _octal(0, 8)
_MTIME = _octal(FIXED_MTIME, 12)
# typeflag, linkname, magic + version, uname + gname, devmajor, devminor, prefix + padding.
_TAIL = b"0" + b"\0" * 100 + b"ustar\x0000" + b"\0" * (64 + 16 + 167)
_SPACES = b" " * 8
_BASE_SUM = sum(_MODE + _OWNER + _OWNER + _MTIME + _SPACES + _TAIL)


def member_header(name: bytes, size: int) -> bytes:
    """The 512-byte ustar header of a regular file ``name`` (≤ 100 bytes) of ``size`` bytes."""
    if len(name) > 100 or size >= 8**11:
        raise ValueError(f"member {name!r} ({size} bytes) does not fit a ustar header")
    size_field = _octal(size, 12)
    checksum = _BASE_SUM + sum(name) + sum(size_field)
    return b"".join(
        (
            name.ljust(100, b"\0"),
            _MODE,
            _OWNER,
            _OWNER,
            size_field,
            _MTIME,
            b"%06o\0 " % checksum,
            _TAIL,
        )
    )


def _closed_size(size: int) -> int:
    end = size + 2 * BLOCK
    return (end + RECORD - 1) // RECORD * RECORD


class ShardWriter:
    """Write samples into ``<folder>/<prefix>-00000.tar``, ``-00001.tar``, …"""

    def __init__(self, folder: Path, prefix: str, *, max_bytes: int) -> None:
        self.folder = folder
        self.prefix = prefix
        self.max_bytes = max_bytes
        self.paths: list[Path] = []
        self.digests: dict[Path, str] = {}  # sha256 of each closed shard, hashed as written
        self.samples = 0
        self._hash = hashlib.sha256()
        self._handle: BinaryIO | None = None
        self._size = 0
        self._count = 0

    def _open(self) -> BinaryIO:
        path = self.folder / f"{self.prefix}-{len(self.paths):05d}.tar"
        self.folder.mkdir(parents=True, exist_ok=True)
        self.paths.append(path)
        self._handle = open(path, "wb", buffering=1 << 20)  # noqa: SIM115 - closed in _finish
        self._size = 0
        self._count = 0
        self._hash = hashlib.sha256()
        return self._handle

    def write(self, key: str, members: Mapping[str, bytes]) -> Path:
        """Write one sample (``{extension: bytes}``, extensions in a fixed order); return the
        shard it went to."""
        if "." in key or "/" in key:
            raise ValueError(f"a sample key must not contain dots or slashes: {key!r}")
        needed = sample_tar_bytes(members, key)
        handle = self._handle
        if (
            handle is not None
            and self._count
            and (_closed_size(self._size + needed) > self.max_bytes)
        ):
            self._finish()
            handle = None
        if handle is None:
            handle = self._open()
        parts = []
        for ext, data in members.items():
            parts.append(member_header(f"{key}.{ext}".encode(), len(data)))
            parts.append(data)
            parts.append(b"\0" * (_padded(len(data)) - len(data)))
        blob = b"".join(parts)
        handle.write(blob)
        self._hash.update(blob)
        self._size += needed
        self._count += 1
        self.samples += 1
        return self.paths[-1]

    def _finish(self) -> None:
        if self._handle is None:
            return
        tail = b"\0" * (_closed_size(self._size) - self._size)
        self._handle.write(tail)
        self._hash.update(tail)
        self._handle.close()
        self.digests[self.paths[-1]] = self._hash.hexdigest()
        self._handle = None

    def close(self) -> list[Path]:
        self._finish()
        return self.paths

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
