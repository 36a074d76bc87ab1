"""The hand-built tar headers are exactly what ``tarfile`` writes, and readers accept them."""

from __future__ import annotations

import tarfile
from pathlib import Path

import pytest

from synthesis.export.shards import FIXED_MTIME, ShardWriter, member_header


@pytest.mark.parametrize(
    "name,size", [("s0000001_f000.png", 12345), ("C1-1.json", 0), ("x" * 100, 8**11 - 1)]
)
def test_header_matches_tarfile(name: str, size: int) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = size, FIXED_MTIME, 0o644
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    assert member_header(name.encode(), size) == info.tobuf(tarfile.USTAR_FORMAT, "utf-8", "strict")


def test_tarfile_reads_a_shard(tmp_path: Path) -> None:
    with ShardWriter(tmp_path, "frames", max_bytes=1 << 20) as writer:
        writer.write("a_1", {"json": b"{}", "txt": b"hello"})
        writer.write("a_2", {"json": b"[]", "txt": b""})
    with tarfile.open(writer.paths[0]) as tar:
        assert tar.getnames() == ["a_1.json", "a_1.txt", "a_2.json", "a_2.txt"]
        assert tar.extractfile("a_1.txt").read() == b"hello"  # type: ignore[union-attr]
    with pytest.raises(ValueError, match="dots"):
        ShardWriter(tmp_path, "x", max_bytes=1 << 20).write("a.b", {"txt": b""})
