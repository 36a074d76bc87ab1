"""``dataset_export``: write a dataset folder from the approved data.

Everything is written into a hidden sibling folder (``.<out>.partial-…``) and renamed onto
``out`` only when the manifest is complete, so a crash never leaves a half-written folder that
looks like a finished export. Frames stream from the database; this process plans each sample
and writes the Parquet index, the jsonl and the card, while writer processes move the image bytes
(``frame_writers``).
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import json
import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Generator, Iterator
from pathlib import Path
from typing import Any, BinaryIO

from django.conf import settings
from django.core.files.storage import default_storage

from synthesis.artifacts import read_bytes
from synthesis.export.card import DatasetStats, write_card
from synthesis.export.frame_writers import FrameWriters, read_file
from synthesis.export.options import (
    EXPORT_MARKER,
    MANIFEST_NAME,
    ExportError,
    ExportOptions,
    check_out_dir,
    is_previous_export,
)
from synthesis.export.parquet import ParquetIndex
from synthesis.export.planning import (
    FramePlanner,
    Planned,
    PlannedFrame,
    Selection,
    dumps,
    planned_in_order,
)
from synthesis.export.selection import (
    CharacterInfo,
    exportable_frames,
    locked_characters,
    story_characters,
)
from synthesis.export.shards import ShardWriter, file_sha256
from synthesis.export.splits import SPLITS, SplitPlan, split_plan

FORMAT_VERSION = 1
PROGRESS_EVERY = 256
Progress = Callable[[int, int], None]


class _Images:
    """Where stored images are read from: straight from disk when the storage is a local
    folder (the writer processes open the files themselves), through the storage otherwise."""

    def __init__(self) -> None:
        try:
            self.base: str | None = os.path.join(default_storage.path(""), "")  # ends in "/"
        except NotImplementedError:
            self.base = None

    @property
    def local(self) -> bool:
        return self.base is not None

    def locate(self, name: str) -> str:
        """The path a writer opens (the storage name itself when storage is not local)."""
        if self.base is None:
            return name
        # Names come from our own rows; anything unusual goes through the storage's safe join.
        if name[:1] == "/" or ".." in name:
            return str(default_storage.path(name))
        return self.base + name

    def size(self, located: str) -> int:
        try:
            if self.base is not None:
                return os.stat(located).st_size
            return int(default_storage.size(located))
        except OSError as exc:
            raise ExportError(f"cannot read stored image {located}: {exc}") from None

    def read(self, located: str, size: int) -> bytes:
        if self.base is not None:
            return read_file(located, size)
        return read_bytes(located)

    def read_all(self, name: str) -> bytes:
        located = self.locate(name)
        return self.read(located, self.size(located))


def character_metadata(info: CharacterInfo, split: str) -> dict[str, Any]:
    return {
        "cid": info.cid,
        "split": split,
        "name": info.name,
        "subject_category": info.subject_category,
        "subject_type": info.subject_type,
        "profession_category": info.profession_category,
        "profession": info.profession,
    }


class _Writers:
    """The open writers of one export, by format and split."""

    def __init__(self, root: Path, options: ExportOptions, images: _Images, workers: int) -> None:
        self.root = root
        self.options = options
        self.formats = set(options.formats)
        self.images = images
        self.frames = FrameWriters(
            root,
            max_bytes=options.shard_max_bytes,
            shards="webdataset" in self.formats,
            # Writer processes open image files themselves; other storages are read here.
            workers=workers if images.local else 0,
            read=images.read,
        )
        self.parquet = ParquetIndex(root / "index.parquet") if "parquet" in self.formats else None
        self.jsonl: dict[str, BinaryIO] = {}
        self.files: dict[Path, str] = {}  # sha256 of files whose digest is already known

    def shard(self, split: str, prefix: str) -> ShardWriter:
        return ShardWriter(
            self.root / "webdataset" / split, prefix, max_bytes=self.options.shard_max_bytes
        )

    def omnigen2_line(self, split: str, line: bytes) -> None:
        if split not in self.jsonl:
            path = self.root / "omnigen2" / f"{split}.jsonl"
            path.parent.mkdir(parents=True, exist_ok=True)
            self.jsonl[split] = open(path, "wb")  # noqa: SIM115 - closed below
        self.jsonl[split].write(line + b"\n")

    def image_file(self, relative: str, data: bytes, digest: str) -> None:
        path = self.root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as handle:
            handle.write(data)
        self.files[path] = digest

    def finish_frames(self) -> None:
        """Wait for the frame writers; record the digests of their shards."""
        self.files.update(self.frames.finish())

    def close(self) -> None:
        if self.parquet is not None:
            self.parquet.close()
        for handle in self.jsonl.values():
            handle.close()


def dataset_export(
    *,
    out: Path,
    options: ExportOptions,
    progress: Progress | None = None,
    workers: int | None = None,
    planners: int | None = None,
) -> dict[str, Any]:
    """Export the approved data to ``out``; return the manifest. Raises ExportError early for
    bad arguments, before anything is written. ``workers`` (writer processes; 0 writes in this
    process) and ``planners`` (planner processes; 0 plans in this process) change how fast,
    never what is written."""
    out = Path(out).absolute()
    check_out_dir(out)
    if workers is not None and workers < 0:
        raise ExportError(f"workers must be 0 or more, not {workers}.")
    if planners is not None and planners < 0:
        raise ExportError(f"planners must be 0 or more, not {planners}.")
    characters = locked_characters()
    plan = _split_plan(options)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    try:
        images = _Images()
        selection = Selection(
            include_partial=options.include_partial_stories,
            characters=characters,
            split_plan=plan,
            planner=FramePlanner(frozenset(options.formats), tmp, images),
        )
        # Planners are forked before the writers start, so they hold none of the writers' pipes.
        with planned_in_order(
            selection, settings.HILAPP_EXPORT_PLANNERS if planners is None else planners
        ) as chunks:
            # Counted while the planners start (the progress bar's total).
            total = exportable_frames(include_partial=options.include_partial_stories).count()
            writers = _Writers(
                tmp, options, images, settings.HILAPP_EXPORT_WORKERS if workers is None else workers
            )
            manifest = _write_all(writers, chunks, plan, characters, total, progress)
        os.chmod(tmp, 0o755)
        _publish(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return manifest


def _split_plan(options: ExportOptions) -> SplitPlan:
    if not (options.holdout_characters or options.holdout_stories):
        return SplitPlan.all_train()
    return split_plan(
        story_characters(include_partial=options.include_partial_stories),
        holdout_characters=options.holdout_characters,
        holdout_stories=options.holdout_stories,
        seed=options.seed,
    )


def _write_all(
    writers: _Writers,
    chunks: Iterator[Planned],
    plan: SplitPlan,
    characters: dict[int, CharacterInfo],
    total: int,
    progress: Progress | None,
) -> dict[str, Any]:
    root, options = writers.root, writers.options
    stats = DatasetStats()
    skipped = done = 0
    try:
        with _gc_paused():
            for frames, tally in chunks:
                planned = iter(frames)
                try:
                    for frame in planned:
                        _emit(writers, frame)
                        done += 1
                        if progress is not None and done % PROGRESS_EVERY == 0:
                            progress(done, total)
                finally:
                    # A stream holds a database cursor: close it now, not whenever it is
                    # collected (by then it could be inside another transaction).
                    if isinstance(planned, Generator):
                        planned.close()
                stats.merge(tally.stats)
                skipped += tally.skipped  # left the selection or crossed the split meanwhile
        _write_characters(writers, stats, characters)
        counts = _counts(stats, plan, skipped)
        layout = _layout(options)
        # The writers finish the last shards while the card is drawn.
        for path in write_card(
            root,
            stats=stats,
            characters=characters,
            manifest_counts=counts,
            layout=layout,
            meanwhile=writers.finish_frames,
        ):
            writers.files[path] = file_sha256(path)
    except BaseException:
        writers.frames.abort()
        raise
    finally:
        writers.close()
    if progress is not None:
        progress(done, done)
    if writers.parquet is not None:
        writers.files[writers.parquet.path] = file_sha256(writers.parquet.path)
    for split in writers.jsonl:
        path = root / "omnigen2" / f"{split}.jsonl"
        writers.files[path] = file_sha256(path)
    heldout_cids = sorted(characters[c].cid for c in plan.heldout_characters if c in characters)
    manifest = {
        "kind": EXPORT_MARKER,
        "format_version": FORMAT_VERSION,
        "params": options.as_params(),
        "counts": counts,
        "splits": {
            "heldout_cids": heldout_cids,
            "story_ids": {
                "train": sorted(stats.stories.get("train", set())),
                "heldout": sorted(stats.stories.get("heldout", set())),
                "excluded": sorted(plan.excluded_stories),
            },
        },
        "statistics": stats.summary(characters),
        "layout": layout,
        "files": {
            path.relative_to(root).as_posix(): {"bytes": path.stat().st_size, "sha256": digest}
            for path, digest in sorted(writers.files.items())
        },
    }
    (root / MANIFEST_NAME).write_bytes(
        json.dumps(manifest, sort_keys=True, indent=1, ensure_ascii=False).encode() + b"\n"
    )
    return manifest


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """No cyclic garbage collection while frames stream: every frame allocates a few dozen
    objects, none of them in a cycle, and the collections they trigger walk every object of the
    process (Django, matplotlib) again and again: about a tenth of the export's time."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _emit(writers: _Writers, frame: PlannedFrame) -> None:
    """Place a planned frame: its shard, its Parquet row, its OmniGen2 line (in export order)."""
    sample = frame.sample
    shard = writers.frames.add(frame.split, sample)
    if frame.omnigen2_line:
        # Its sha256 is the stored one: the writer that copies the image checks it.
        writers.files[Path(sample.copy_to)] = sample.sha256
        writers.omnigen2_line(frame.split, frame.omnigen2_line)
    if writers.parquet is not None and frame.parquet_row is not None:
        frame.parquet_row["shard"] = shard
        writers.parquet.add(frame.parquet_row)


def _write_characters(
    writers: _Writers, stats: DatasetStats, characters: dict[int, CharacterInfo]
) -> None:
    """The CID templates of the characters each split shows, keyed by CID."""
    for split in SPLITS:
        used = sorted(
            (characters[c] for c in stats.characters.get(split, set())), key=lambda i: i.cid
        )
        if not used:
            continue
        shards = writers.shard(split, "characters") if "webdataset" in writers.formats else None
        for info in used:
            if not info.template:
                raise ExportError(f"Character {info.cid} is locked but has no template image.")
            image = writers.images.read_all(info.template)
            digest = hashlib.sha256(image).hexdigest()
            if shards is not None:
                shards.write(
                    info.cid, {"json": dumps(character_metadata(info, split)), "png": image}
                )
            if "omnigen2" in writers.formats:
                writers.image_file(f"omnigen2/images/characters/{info.cid}.png", image, digest)
        if shards is not None:
            shards.close()
            writers.files.update(shards.digests)


def _counts(stats: DatasetStats, plan: SplitPlan, skipped: int) -> dict[str, Any]:
    return {
        "frames": sum(stats.frames.values()),
        "frames_train": stats.frames.get("train", 0),
        "frames_heldout": stats.frames.get("heldout", 0),
        "stories_train": len(stats.stories.get("train", set())),
        "stories_heldout": len(stats.stories.get("heldout", set())),
        "stories_excluded": len(plan.excluded_stories),
        "characters_train": len(stats.characters.get("train", set())),
        "characters_heldout": len(stats.characters.get("heldout", set())),
        "heldout_characters_chosen": len(plan.heldout_characters),
        "frames_skipped_while_running": skipped,
    }


def _layout(options: ExportOptions) -> dict[str, str]:
    layout = {
        MANIFEST_NAME: "counts, parameters, split story ids and sha256 of every file",
        "README.md": "this dataset card",
        "card/*.png": "the plots of this card",
    }
    if "webdataset" in options.formats:
        layout["webdataset/{train,heldout}/frames-NNNNN.tar"] = (
            "WebDataset shards, one sample per frame: png (image), txt (frame prompt), json "
            "(story, frame index, genre, characters [{cid, pid, eid, ctag}], approval path, "
            "models, split)"
        )
        layout["webdataset/{train,heldout}/characters-NNNNN.tar"] = (
            "CID templates keyed by CID: png (template), json (concept)"
        )
    if "parquet" in options.formats:
        layout["index.parquet"] = "one row per frame with all metadata"
    if "omnigen2" in options.formats:
        layout["omnigen2/{train,heldout}.jsonl"] = (
            'OmniGen2 in-context lines {"task_type": "ic", "instruction", "input_images", '
            '"output_image"}; paths relative to omnigen2/'
        )
    return layout


def _publish(tmp: Path, out: Path) -> None:
    """Move the finished folder onto ``out`` (replacing an empty folder or a previous export)."""
    if not out.exists():
        tmp.rename(out)
        return
    if not any(out.iterdir()):
        os.replace(tmp, out)  # replaces an empty directory
        return
    if not is_previous_export(out):
        raise ExportError(f"{out} became a non-empty folder that is not an export.")
    old = out.with_name(f".{out.name}.old-{uuid.uuid4().hex[:8]}")
    out.rename(old)
    tmp.rename(out)
    shutil.rmtree(old, ignore_errors=True)
