"""Shards are plain tar that readers accept, with the same header fields in every member."""

from __future__ import annotations

import tarfile
from pathlib import Path

import pytest

from synthesis.export.shards import FIXED_MTIME, ShardWriter


def test_every_member_has_fixed_owner_mode_and_mtime(tmp_path: Path) -> None:
    with ShardWriter(tmp_path, "frames", max_bytes=1 << 20) as writer:
        writer.write("s0000001_f000", {"json": b"{}", "png": b"\x89PNG" * 3000, "txt": b"a"})
    with tarfile.open(writer.paths[0]) as tar:
        members = tar.getmembers()
    assert [m.name for m in members] == [
        "s0000001_f000.json",
        "s0000001_f000.png",
        "s0000001_f000.txt",
    ]
    for member in members:
        assert (member.mtime, member.mode, member.uid, member.gid) == (FIXED_MTIME, 0o644, 0, 0)
        assert (member.uname, member.gname, member.type) == ("", "", tarfile.REGTYPE)
    assert writer.paths[0].stat().st_size % tarfile.RECORDSIZE == 0


def test_tarfile_reads_a_shard(tmp_path: Path) -> None:
    with ShardWriter(tmp_path, "frames", max_bytes=1 << 20) as writer:
        writer.write("a_1", {"json": b"{}", "txt": b"hello"})
        writer.write("a_2", {"json": b"[]", "txt": b""})
    with tarfile.open(writer.paths[0]) as tar:
        assert tar.getnames() == ["a_1.json", "a_1.txt", "a_2.json", "a_2.txt"]
        assert tar.extractfile("a_1.txt").read() == b"hello"  # type: ignore[union-attr]
    with pytest.raises(ValueError, match="dots"):
        ShardWriter(tmp_path, "x", max_bytes=1 << 20).write("a.b", {"txt": b""})
