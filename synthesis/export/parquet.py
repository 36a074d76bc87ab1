"""The Parquet index: one row per exported frame with all its metadata, written in row groups."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

ROW_GROUP = 4096
CHARACTER_FIELDS = ("cid", "pid", "eid", "ctag")

SCHEMA = pa.schema(
    [
        ("key", pa.string()),
        ("split", pa.string()),
        ("story_id", pa.int64()),
        ("frame_index", pa.int32()),
        ("genre", pa.string()),
        ("story_title", pa.string()),
        ("frame_text", pa.string()),
        ("approval_path", pa.string()),
        ("audit", pa.string()),
        ("synthesizer_model", pa.string()),
        ("arbitrator_model", pa.string()),
        ("image_sha256", pa.string()),
        ("image_bytes", pa.int64()),
        ("character_count", pa.int32()),
        ("cids", pa.list_(pa.string())),
        ("characters", pa.list_(pa.struct([(k, pa.string()) for k in CHARACTER_FIELDS]))),
        ("shard", pa.string()),
        ("omnigen2_image", pa.string()),
    ]
)


class ParquetIndex:
    """Collect rows and flush them every ``ROW_GROUP`` rows (memory stays bounded)."""

    def __init__(self, path: Path) -> None:
        self._buffer: list[dict[str, Any]] = []
        self._writer = pq.ParquetWriter(
            path, SCHEMA, compression="zstd", write_statistics=True, store_schema=True
        )

    def add(self, row: dict[str, Any]) -> None:
        self._buffer.append({name: row[name] for name in SCHEMA.names})
        if len(self._buffer) >= ROW_GROUP:
            self._flush()

    def _flush(self) -> None:
        if self._buffer:
            self._writer.write_table(pa.Table.from_pylist(self._buffer, schema=SCHEMA))
            self._buffer = []

    def close(self) -> None:
        self._flush()
        self._writer.close()
