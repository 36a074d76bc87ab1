"""WebDataset shards: plain POSIX tar, byte-identical for the same samples.

Members are written straight to the file (no sample is kept after it is written), with a fixed
mtime, owner and mode, so that the same samples in the same order always give the same bytes.
A shard is closed before a sample would push it past ``max_bytes`` (a single sample larger than
the limit gets a shard of its own); that rule lives in ``ShardCutter`` alone, so a planner that
only knows the sizes of its samples cuts shards exactly where a writer holding the bytes would.

This module needs nothing but the standard library: the export's writer processes import it.
"""

from __future__ import annotations

import hashlib
import os
import tarfile
from collections.abc import Iterable, Mapping
from pathlib import Path

BLOCK = tarfile.BLOCKSIZE  # 512
RECORD = tarfile.RECORDSIZE  # 10240: tar files are padded to a whole record
FIXED_MTIME = 946684800  # 2000-01-01T00:00:00Z
FLUSH_BYTES = 4 << 20  # written (and hashed) in pieces of about this size
_ZEROS = bytes(BLOCK)


def _padding(size: int) -> int:
    return -size % BLOCK


def member_tar_bytes(size: int) -> int:
    """Bytes a member of ``size`` bytes takes in a tar: its header (names are short: one
    block) and its data padded to whole blocks."""
    return BLOCK + size + _padding(size)


def sample_tar_bytes(sizes: Iterable[int]) -> int:
    """Bytes a sample with members of these sizes takes in a tar."""
    return sum(map(member_tar_bytes, sizes))


def closed_size(size: int) -> int:
    """The size of a tar holding ``size`` bytes of members, once its end blocks are written."""
    end = size + 2 * BLOCK
    return (end + RECORD - 1) // RECORD * RECORD


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


def sample_bytes(key: str, members: Iterable[tuple[str, bytes]]) -> bytearray:
    """A sample as it lies in a tar: each ``(extension, bytes)`` member's header, data, padding."""
    blob = bytearray()
    for ext, data in members:
        blob += member_header(f"{key}.{ext}".encode(), len(data))
        blob += data
        blob += _ZEROS[: _padding(len(data))]
    return blob


def check_key(key: str) -> None:
    if "." in key or "/" in key:
        raise ValueError(f"a sample key must not contain dots or slashes: {key!r}")


class ShardCutter:
    """Where the next sample goes: the shard numbers of one stream of samples, from sizes."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.shard = -1  # no shard opened yet
        self._size = 0
        self._count = 0

    def place(self, sample_bytes: int) -> tuple[int, bool]:
        """The shard of a sample of ``sample_bytes``, and whether it opens a new shard."""
        opens = self.shard < 0 or (
            self._count > 0 and closed_size(self._size + sample_bytes) > self.max_bytes
        )
        if opens:
            self.shard += 1
            self._size = self._count = 0
        self._size += sample_bytes
        self._count += 1
        return self.shard, opens


class ShardFile:
    """One shard being written: members appended in order, hashed as they are written."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        self._hash = hashlib.sha256()
        self._buffer = bytearray()
        self._size = 0

    def append(self, key: str, members: Iterable[tuple[str, bytes]]) -> None:
        """Append one sample: ``(extension, bytes)`` members, in the order given."""
        self._buffer += sample_bytes(key, members)
        if len(self._buffer) >= FLUSH_BYTES:
            self._flush()

    def _flush(self) -> None:
        # One large write and one large hash update: both release the GIL for their whole
        # length, and syscalls per sample would cost more than the copy into the buffer.
        view = memoryview(self._buffer)
        self._hash.update(view)
        while view:
            view = view[os.write(self._fd, view) :]
        self._size += len(self._buffer)
        self._buffer = bytearray()

    def close(self) -> str:
        """Write the end-of-archive blocks; return the shard's sha256."""
        pending = self._size + len(self._buffer)
        self._buffer += bytes(closed_size(pending) - pending)
        self._flush()
        os.close(self._fd)
        return self._hash.hexdigest()


class ShardWriter:
    """Write samples held in memory into ``<folder>/<prefix>-00000.tar``, ``-00001.tar``, …"""

    def __init__(self, folder: Path, prefix: str, *, max_bytes: int) -> None:
        self.folder = folder
        self.prefix = prefix
        self.paths: list[Path] = []
        self.digests: dict[Path, str] = {}  # sha256 of each closed shard, hashed as written
        self.samples = 0
        self._cutter = ShardCutter(max_bytes)
        self._file: ShardFile | None = None

    def write(self, key: str, members: Mapping[str, bytes]) -> Path:
        """Write one sample (``{extension: bytes}``, extensions in a fixed order); return the
        shard it went to."""
        check_key(key)
        _, opens = self._cutter.place(sample_tar_bytes(len(d) for d in members.values()))
        if opens or self._file is None:
            self._finish()
            self._file = ShardFile(self.folder / f"{self.prefix}-{len(self.paths):05d}.tar")
            self.paths.append(self._file.path)
        self._file.append(key, members.items())
        self.samples += 1
        return self.paths[-1]

    def _finish(self) -> None:
        if self._file is not None:
            self.digests[self._file.path] = self._file.close()
            self._file = None

    def close(self) -> list[Path]:
        self._finish()
        return self.paths

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
