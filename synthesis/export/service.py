"""``dataset_export``: write a dataset folder from the approved data, in one streaming pass.

Frames are written in export order while threads read and check their images ahead; then the CID
templates, the card and, last, the manifest. All of it goes into a hidden sibling folder renamed
onto ``out`` only when complete, so a crash never leaves a folder that looks like a finished one.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Generator
from dataclasses import asdict
from operator import attrgetter
from pathlib import Path
from typing import Any, BinaryIO

import orjson
from django.conf import settings

from synthesis.export.card import DatasetStats, write_card
from synthesis.export.images import in_order, read_stored, stored_size
from synthesis.export.options import MANIFEST_NAME, ExportError, ExportOptions
from synthesis.export.parquet import ParquetIndex
from synthesis.export.selection import (
    CharacterInfo,
    FrameRecord,
    exportable_frames,
    frame_records,
    locked_characters,
    story_characters,
)
from synthesis.export.shards import ShardWriter, file_sha256
from synthesis.export.splits import SPLITS, SplitPlan, split_plan

FORMAT_VERSION = 1
EXPORT_MARKER = "hilapp-dataset"  # the manifest's kind: a folder that a new export may replace
PROGRESS_EVERY = 256
Progress = Callable[[int, int], None]
LAYOUT = {  # path → (the format that writes it, or "" for every export; what it holds)
    MANIFEST_NAME: ("", "counts, parameters, split story ids and sha256 of every file"),
    "README.md": ("", "this dataset card"),
    "card/*.png": ("", "the plots of this card"),
    "webdataset/{train,heldout}/frames-NNNNN.tar": (
        "webdataset",
        "WebDataset shards, one sample per frame: png (image), txt (frame prompt), json (story, "
        "frame index, genre, characters [{cid, pid, eid, ctag}], approval path, models, split)",
    ),
    "webdataset/{train,heldout}/characters-NNNNN.tar": (
        "webdataset",
        "CID templates keyed by CID: png (template), json (concept)",
    ),
    "index.parquet": ("parquet", "one row per frame with all metadata"),
    "omnigen2/{train,heldout}.jsonl": (
        "omnigen2",
        'OmniGen2 in-context lines {"task_type": "ic", "instruction", "input_images", '
        '"output_image"}; paths relative to omnigen2/',
    ),
}


def dumps(value: Any) -> bytes:
    """Compact JSON with sorted keys (the same value always gives the same bytes)."""
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


def frame_metadata(record: FrameRecord, split: str) -> dict[str, Any]:
    return {
        "key": record.key,
        "split": split,
        "story_id": record.story_id,
        "story_title": record.title,
        "frame_index": record.index,
        "genre": record.genre,
        "text": record.frame_text,
        "characters": [
            {"cid": c.cid, "pid": c.pid, "eid": c.eid, "ctag": c.ctag} for c in record.cast
        ],
        "approval_path": record.approval_path,
        "audit": record.audit,
        "models": {"synthesizer": record.synthesizer_model, "arbitrator": record.arbitrator_model},
        "image_sha256": record.image_sha256,
    }


class _Writers:
    """One export under way: what it was asked, its split plan and characters, its files."""

    def __init__(
        self, root: Path, options: ExportOptions, plan: SplitPlan, chars: dict[int, CharacterInfo]
    ) -> None:
        self.root = root
        self.options = options
        self.plan = plan
        self.characters = chars
        self.formats = set(options.formats)
        self.parquet = ParquetIndex(root / "index.parquet") if "parquet" in self.formats else None
        self.shards: dict[tuple[str, str], ShardWriter] = {}
        self.jsonl: dict[str, BinaryIO] = {}
        self.digests: dict[Path, str] = {}  # of files whose sha256 is known without reading them
        self.skipped = 0  # frames that left the selection or crossed the split meanwhile
        self.stats = DatasetStats()

    def shard(self, split: str, prefix: str, key: str, members: dict[str, bytes]) -> str:
        if (split, prefix) not in self.shards:
            folder, limit = self.root / "webdataset" / split, self.options.shard_max_bytes
            self.shards[split, prefix] = ShardWriter(folder, prefix, max_bytes=limit)
        return self.shards[split, prefix].write(key, members).relative_to(self.root).as_posix()

    def frame(self, record: FrameRecord, split: str, image: bytes | int) -> None:
        """Write one frame; ``image`` is its bytes, or only their count when no image leaves."""
        self.stats.add(record, split)
        meta = frame_metadata(record, split)
        shard = omni = ""
        if "webdataset" in self.formats:
            assert isinstance(image, bytes)
            members = {"json": dumps(meta), "png": image, "txt": record.frame_text.encode()}
            shard = self.shard(split, "frames", record.key, members)
        if "omnigen2" in self.formats:
            assert isinstance(image, bytes)
            omni = f"images/frames/{record.key}.png"
            copy = self.root / "omnigen2" / omni
            copy.parent.mkdir(parents=True, exist_ok=True)
            copy.write_bytes(image)
            self.digests[copy] = record.image_sha256  # checked when it was read
            if split not in self.jsonl:
                self.jsonl[split] = (self.root / "omnigen2" / f"{split}.jsonl").open("wb")
            inputs = [f"images/characters/{c.cid}.png" for c in record.cast]
            line = {"task_type": "ic", "instruction": record.frame_text, "input_images": inputs}
            self.jsonl[split].write(dumps({**line, "output_image": omni}) + b"\n")
        if self.parquet is not None:
            row = meta | {
                "frame_text": record.frame_text,
                "synthesizer_model": record.synthesizer_model,
                "arbitrator_model": record.arbitrator_model,
                "image_bytes": image if isinstance(image, int) else len(image),
                "character_count": len(record.cast),
                "cids": [c.cid for c in record.cast],
                "shard": shard,
                "omnigen2_image": f"omnigen2/{omni}" if omni else "",
            }
            self.parquet.add(row)

    def close(self) -> None:
        for writer in self.shards.values():
            writer.close()
            self.digests.update(writer.digests)  # hashed as they were written
        if self.parquet is not None:
            self.parquet.close()
        for handle in self.jsonl.values():
            handle.close()


def dataset_export(
    *,
    out: Path,
    options: ExportOptions,
    progress: Progress | None = None,
    readers: int | None = None,
) -> dict[str, Any]:
    """Export the approved data to ``out``; return the manifest. Raises ExportError early for
    bad arguments, before anything is written. ``readers`` (threads reading images; default
    ``HILAPP_EXPORT_READERS``) changes how fast, never what is written."""
    out = Path(out).absolute()
    _check_out_dir(out)
    readers = settings.HILAPP_EXPORT_READERS if readers is None else readers
    if readers < 1:
        raise ExportError(f"readers must be at least 1, not {readers}.")
    characters = locked_characters()
    plan = SplitPlan()  # nothing held out: no story needs looking at before the frames stream
    if options.holdout_characters or options.holdout_stories:
        stories = story_characters(include_partial=options.include_partial_stories)
        plan = split_plan(stories, options)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    try:
        writers = _Writers(tmp, options, plan, characters)
        try:
            _write_frames(writers, readers, progress or (lambda done, total: None))
            _write_characters(writers)
        finally:
            writers.close()
        manifest = _write_manifest(writers)
        os.chmod(tmp, 0o755)
        _publish(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return manifest


def _write_frames(writers: _Writers, readers: int, progress: Progress) -> None:
    """Stream the selected frames in order while the readers fetch their images."""
    include_partial = writers.options.include_partial_stories
    total = exportable_frames(include_partial=include_partial).count()
    reads_images = bool(writers.formats & {"webdataset", "omnigen2"})

    def selected() -> Generator[tuple[FrameRecord, str], None, None]:
        for record in frame_records(include_partial=include_partial, characters=writers.characters):
            split = writers.plan.split_of(record.story_id, (c.character_id for c in record.cast))
            if split is None or not all(c.cid for c in record.cast):
                writers.skipped += 1
                continue
            if not record.image_sha256:
                raise ExportError(
                    f"frame {record.key} has no stored sha256: its image cannot be checked"
                )
            yield record, split

    def read(item: tuple[FrameRecord, str]) -> bytes | int:
        record, what = item[0], f"frame {item[0].key}"
        if reads_images:
            return read_stored(record.image, what=what, sha256=record.image_sha256)
        return stored_size(record.image, what=what)

    done = 0
    # Both generators hold database cursors: close them now, not whenever they are collected.
    with (
        contextlib.closing(selected()) as records,
        contextlib.closing(in_order(records, read, threads=readers)) as frames,
    ):
        for done, ((record, split), image) in enumerate(frames, 1):
            writers.frame(record, split, image)
            if done % PROGRESS_EVERY == 0:
                progress(done, total)
    progress(done, done)


def _write_characters(writers: _Writers) -> None:
    """The CID templates of the characters each split shows, keyed by CID."""
    for split in SPLITS:
        used = (writers.characters[c] for c in writers.stats.characters.get(split, ()))
        for info in sorted(used, key=attrgetter("cid")):
            if not info.template:
                raise ExportError(f"Character {info.cid} is locked but has no template image.")
            image = read_stored(info.template, what=f"character {info.cid}")
            if "webdataset" in writers.formats:
                concept = {k: v for k, v in asdict(info).items() if k not in ("id", "template")}
                concept["split"] = split
                writers.shard(split, "characters", info.cid, {"json": dumps(concept), "png": image})
            if "omnigen2" in writers.formats:
                path = writers.root / "omnigen2" / "images" / "characters" / f"{info.cid}.png"
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(image)


def _write_manifest(writers: _Writers) -> dict[str, Any]:
    """Draw the card, then write the manifest: the last file, so its presence means done."""
    root, stats, plan, characters = writers.root, writers.stats, writers.plan, writers.characters
    counts = {
        "frames": sum(stats.frames.values()),
        "frames_train": stats.frames.get("train", 0),
        "frames_heldout": stats.frames.get("heldout", 0),
        "stories_train": len(stats.stories.get("train", ())),
        "stories_heldout": len(stats.stories.get("heldout", ())),
        "stories_excluded": len(plan.excluded_stories),
        "characters_train": len(stats.characters.get("train", ())),
        "characters_heldout": len(stats.characters.get("heldout", ())),
        "heldout_characters_chosen": len(plan.heldout_characters),
        "frames_skipped_while_running": writers.skipped,
    }
    layout = {path: what for path, (fmt, what) in LAYOUT.items() if fmt in {"", *writers.formats}}
    write_card(root, stats=stats, characters=characters, manifest_counts=counts, layout=layout)
    story_ids = {split: sorted(stats.stories.get(split, ())) for split in SPLITS}
    story_ids["excluded"] = sorted(plan.excluded_stories)
    heldout_cids = sorted(characters[c].cid for c in plan.heldout_characters if c in characters)
    manifest = {
        "kind": EXPORT_MARKER,
        "format_version": FORMAT_VERSION,
        "params": writers.options.as_params(),
        "counts": counts,
        "splits": {"heldout_cids": heldout_cids, "story_ids": story_ids},
        "statistics": stats.summary(characters),
        "layout": layout,
        "files": {
            path.relative_to(root).as_posix(): {
                "bytes": path.stat().st_size,
                "sha256": writers.digests.get(path) or file_sha256(path),
            }
            for path in sorted(p for p in root.rglob("*") if p.is_file())
        },
    }
    text = json.dumps(manifest, sort_keys=True, indent=1, ensure_ascii=False) + "\n"
    (root / MANIFEST_NAME).write_bytes(text.encode())
    return manifest


def _check_out_dir(out: Path) -> None:
    """Refuse a destination that is a file, or a non-empty folder that is not an export."""
    if out.exists() and not out.is_dir():
        raise ExportError(f"{out} exists and is not a folder.")
    if out.is_dir() and any(out.iterdir()) and not _is_previous_export(out):
        raise ExportError(
            f"{out} is a non-empty folder that is not a previous export; "
            "give an empty or new folder."
        )
    if not out.parent.is_dir():
        raise ExportError(f"The parent folder {out.parent} does not exist.")


def _is_previous_export(out: Path) -> bool:
    try:
        return bool(json.loads((out / MANIFEST_NAME).read_text()).get("kind") == EXPORT_MARKER)
    except (OSError, ValueError, AttributeError):
        return False


def _publish(tmp: Path, out: Path) -> None:
    """Move the finished folder onto ``out`` (replacing an empty folder or a previous export)."""
    if not out.exists() or not any(out.iterdir()):
        os.replace(tmp, out)  # also replaces an empty directory
        return
    if not _is_previous_export(out):
        raise ExportError(f"{out} became a non-empty folder that is not an export.")
    old = out.with_name(f".{out.name}.old-{uuid.uuid4().hex[:8]}")
    out.rename(old)
    tmp.rename(out)
    shutil.rmtree(old, ignore_errors=True)
