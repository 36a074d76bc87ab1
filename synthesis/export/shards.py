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
from typing import Any

BLOCK = tarfile.BLOCKSIZE  # 512
RECORD = tarfile.RECORDSIZE  # 10240: tar files are padded to a whole record
FIXED_MTIME = 946684800  # 2000-01-01T00:00:00Z
WRITE_BYTES = 128 << 10  # bytes per write (see PieceWriter)
_MAX_PIECES = 512  # buffers per write, well under IOV_MAX (1024 on Linux)
HASH_BLOCK = 1 << 20  # files are hashed in reads of this size
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


def fd_sha256(fd: int) -> str:
    """The sha256 of a file from its descriptor's position on, read into one reused buffer
    (no fresh memory per read)."""
    digest = hashlib.sha256()
    buffer = bytearray(HASH_BLOCK)
    view = memoryview(buffer)
    while count := os.readv(fd, [buffer]):
        digest.update(view[:count])
    return digest.hexdigest()


def file_sha256(path: Path) -> str:
    fd = os.open(path, os.O_RDONLY)
    try:
        return fd_sha256(fd)
    finally:
        os.close(fd)


def closed_size(size: int) -> int:
    """The size of a tar holding ``size`` bytes of members, once its end blocks are written."""
    end = size + 2 * BLOCK
    return (end + RECORD - 1) // RECORD * RECORD


def _octal(value: int, width: int) -> bytes:
    """A tar number field as ``tarfile`` writes it: zero-padded octal and a NUL."""
    return b"%0*o\0" % (width - 1, value)


# Every member header is this ustar header (as tarfile.USTAR_FORMAT writes it) with its name,
# size and checksum filled in: mode, owner, mtime, type and magic never change.
_TEMPLATE = bytes(
    bytes(100)  # name
    + _octal(0o644, 8)  # mode
    + _octal(0, 8) * 2  # uid, gid
    + bytes(12)  # size
    + _octal(FIXED_MTIME, 12)
    + b" " * 8  # the checksum counts its own field as spaces
    + b"0"  # regular file
    + bytes(100)  # linkname
    + b"ustar\x0000"
    + bytes(32 + 32 + 8 + 8 + 155 + 12)  # uname, gname, devmajor, devminor, prefix, padding
)
_TEMPLATE_SUM = sum(_TEMPLATE)
_SIZE, _CHECKSUM = slice(124, 136), slice(148, 156)


def member_header(name: bytes, size: int) -> bytes:
    """The 512-byte ustar header of a regular file ``name`` (≤ 100 bytes) of ``size`` bytes."""
    if len(name) > 100 or size >= 8**11:
        raise ValueError(f"member {name!r} ({size} bytes) does not fit a ustar header")
    size_field = _octal(size, 12)
    header = bytearray(_TEMPLATE)
    header[: len(name)] = name
    header[_SIZE] = size_field
    header[_CHECKSUM] = b"%06o\0 " % (_TEMPLATE_SUM + sum(name) + sum(size_field))
    return bytes(header)


def sample_pieces(key: str, members: Iterable[tuple[str, bytes]]) -> list[bytes]:
    """A sample as it lies in a tar, as pieces to write in order (nothing is copied): each
    ``(extension, bytes)`` member's header, its data and its padding."""
    pieces: list[bytes] = []
    for ext, data in members:
        pieces.append(member_header(f"{key}.{ext}".encode(), len(data)))
        pieces.append(data)
        if pad := _padding(len(data)):
            pieces.append(_ZEROS[:pad])
    return pieces


class PieceWriter:
    """Write buffers to a file from ``offset`` on, in ``pwritev`` calls of ``WRITE_BYTES``,
    without joining them first; hash what is written when given a hash.

    Why not one large write per batch: Linux gives a large write large page-cache folios, and on
    a VM whose host takes back free memory, fresh large folios cost ~3x more to fill than small
    ones (1.17 GB in 4 MiB writes took 2.4 s, in 64-128 KiB writes 0.6-0.9 s). ``tar`` and ``cp``
    write in small pieces too.
    """

    def __init__(self, fd: int, offset: int = 0, digest: Any = None) -> None:
        self.fd = fd
        self.offset = offset
        self._digest = digest
        self._pending: list[bytes | bytearray | memoryview] = []
        self._pending_bytes = 0

    def add(self, data: bytes | bytearray | memoryview) -> None:
        self.extend((data,))

    def extend(self, pieces: Iterable[bytes | bytearray | memoryview]) -> None:
        """Queue ``pieces`` in order; write once ``WRITE_BYTES`` are queued (a write holds at
        most that and one more piece: pieces larger than it are cut)."""
        for piece in pieces:
            size = len(piece)
            if size > WRITE_BYTES:
                view = memoryview(piece)
                for start in range(0, size, WRITE_BYTES):
                    self._queue(view[start : start + WRITE_BYTES], min(WRITE_BYTES, size - start))
            else:
                self._queue(piece, size)

    def _queue(self, piece: bytes | bytearray | memoryview, size: int) -> None:
        self._pending.append(piece)
        self._pending_bytes += size
        if self._pending_bytes >= WRITE_BYTES or len(self._pending) >= _MAX_PIECES:
            self.flush()

    def flush(self) -> None:
        if not self._pending:
            return
        if self._digest is not None:
            for piece in self._pending:
                self._digest.update(piece)
        written = os.pwritev(self.fd, self._pending, self.offset)
        if written < self._pending_bytes:  # rare (a signal, a full disk): write the rest
            rest = memoryview(b"".join(self._pending))[written:]
            while rest:
                rest = rest[os.pwrite(self.fd, rest, self.offset + written) :]
                written = self._pending_bytes - len(rest)
        self.offset += self._pending_bytes
        self._pending, self._pending_bytes = [], 0


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
        self._out = PieceWriter(self._fd, 0, self._hash)

    def append(self, key: str, members: Iterable[tuple[str, bytes]]) -> None:
        """Append one sample: ``(extension, bytes)`` members, in the order given."""
        self._out.extend(sample_pieces(key, members))

    def close(self) -> str:
        """Write the end-of-archive blocks; return the shard's sha256."""
        self._out.flush()
        self._out.add(bytes(closed_size(self._out.offset) - self._out.offset))
        self._out.flush()
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
