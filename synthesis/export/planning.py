"""Planning the frames of an export: from database rows to what the writers need.

Planning a frame is everything about it except its place in a shard: its split, its metadata
JSON, the size of its image (one ``stat``), its OmniGen2 line and its Parquet row. It is the
per-frame Python work of an export, and it depends on nothing but the frame, so it can run
anywhere; placing frames in shards (``FrameWriters.add``) must run in export order, in the
exporting process.

With many cores, planning in the exporting process is what bounds an export of small images
(the writers are idle, waiting for it). ``Planners`` then forks planner processes that plan
interleaved ranges of stories in parallel; the exporting process takes their results in story
order, so the export is the same, byte for byte, whatever the number of planners. Forking keeps
Django, the options, the split plan and the locked characters the exporting process already
has, in a few milliseconds; each planner opens its own database connection.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import math
import os
import signal
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any, NamedTuple, NoReturn, Protocol

import orjson
from django.db import connections
from django.db.models import Count, Max, Min

from synthesis.export.card import DatasetStats
from synthesis.export.frame_writers import FrameSample
from synthesis.export.messages import Message, raise_reported, serve
from synthesis.export.options import ExportError
from synthesis.export.selection import (
    CharacterInfo,
    FrameRecord,
    frame_records,
    story_statuses,
)
from synthesis.export.shards import sample_tar_bytes
from synthesis.export.splits import SplitPlan
from synthesis.models import Story

CHUNK_STORIES = 200  # stories a planner plans per request, about (2,000 frames of ten-frame ones)
AHEAD = 2  # requests a planner may hold: one in hand, one waiting

logger = logging.getLogger(__name__)


def dumps(value: Any) -> bytes:
    """Compact JSON with sorted keys (the same value always gives the same bytes)."""
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


class PlannedFrame(NamedTuple):
    split: str
    sample: FrameSample
    omnigen2_line: bytes  # b"" without the OmniGen2 format
    parquet_row: dict[str, Any] | None  # without its "shard", known once the frame is placed


class ImageLocator(Protocol):
    """Where a storage name's bytes are: what ``FramePlanner`` needs from storage."""

    def locate(self, name: str) -> str: ...

    def size(self, located: str) -> int: ...


def frame_metadata(record: FrameRecord, split: str) -> dict[str, Any]:
    return {
        "key": record.key,
        "split": split,
        "story_id": record.story_id,
        "story_title": record.title,
        "frame_index": record.index,
        "genre": record.genre,
        "text": record.text,
        "characters": [
            {"cid": c.cid, "pid": c.pid, "eid": c.eid, "ctag": c.ctag} for c in record.cast
        ],
        "approval_path": record.approval_path,
        "audit": record.audit,
        "models": {
            "synthesizer": record.synthesizer_model,
            "arbitrator": record.arbitrator_model,
        },
        "image_sha256": record.image_sha256,
    }


@dataclass(frozen=True)
class FramePlanner:
    """Plans one frame; everything it holds is fixed for the whole export."""

    formats: frozenset[str]
    root: Path  # the folder being written (for the OmniGen2 copies)
    images: ImageLocator

    def plan(self, record: FrameRecord, split: str) -> PlannedFrame:
        if not record.image_sha256:
            raise ExportError(
                f"frame {record.key} has no stored sha256: its image cannot be checked"
            )
        meta = frame_metadata(record, split)
        located = self.images.locate(record.image)
        size = self.images.size(located)
        omni_image = copy_to = ""
        line = b""
        if "omnigen2" in self.formats:
            omni_image = f"images/frames/{record.key}.png"
            copy_to = str(self.root / "omnigen2" / omni_image)
            line = dumps(
                {
                    "task_type": "ic",
                    "instruction": record.text,
                    "input_images": [f"images/characters/{cid}.png" for cid in record.cids],
                    "output_image": omni_image,
                }
            )
        row = None
        if "parquet" in self.formats:
            row = {
                "key": record.key,
                "split": split,
                "story_id": record.story_id,
                "frame_index": record.index,
                "genre": record.genre,
                "story_title": record.title,
                "frame_text": record.text,
                "approval_path": record.approval_path,
                "audit": record.audit,
                "synthesizer_model": record.synthesizer_model,
                "arbitrator_model": record.arbitrator_model,
                "image_sha256": record.image_sha256,
                "image_bytes": size,
                "character_count": len(record.cast),
                "cids": record.cids,
                "characters": meta["characters"],
                "omnigen2_image": f"omnigen2/{omni_image}" if omni_image else "",
            }
        meta_json, text = dumps(meta), record.text.encode()
        sample = FrameSample(
            key=record.key,
            json=meta_json,
            txt=text,
            image=located,
            size=size,
            sha256=record.image_sha256,
            copy_to=copy_to,
            tar_bytes=sample_tar_bytes((len(meta_json), size, len(text))),
        )
        return PlannedFrame(split, sample, line, row)


@dataclass
class Tally:
    """What planned frames add to the statistics, and how many frames were dropped (they left
    the selection, or crossed the split, while the export ran)."""

    stats: DatasetStats = field(default_factory=DatasetStats)
    skipped: int = 0


class Planned(NamedTuple):
    """The planned frames of some stories and their tally (complete once ``frames`` has been
    iterated: a stream plans as it is read)."""

    frames: Iterable[PlannedFrame]
    tally: Tally


@dataclass(frozen=True)
class Selection:
    """Which frames leave and how they are planned: fixed for the whole export."""

    include_partial: bool
    characters: dict[int, CharacterInfo]
    split_plan: SplitPlan
    planner: FramePlanner

    def stream(self, stories: tuple[int, int] | None = None) -> Planned:
        """The frames of the stories with ids in ``[lo, hi)`` (all by default), planned one
        by one as they are read. The generator holds a database cursor: close it if it is not
        read to the end."""
        tally = Tally()  # the generator holds the tally, not the Planned: no reference cycle
        return Planned(self._frames(tally, stories), tally)

    def _frames(self, tally: Tally, stories: tuple[int, int] | None) -> Iterator[PlannedFrame]:
        split_of, plan, add = self.split_plan.split_of, self.planner.plan, tally.stats.add
        for record in frame_records(
            include_partial=self.include_partial, characters=self.characters, stories=stories
        ):
            split = split_of(record.story_id, (c.character_id for c in record.cast))
            if split is None or not record.all_locked:
                tally.skipped += 1
                continue
            yield plan(record, split)
            add(record, split)

    def chunk(self, stories: tuple[int, int]) -> Planned:
        """The stories in ``[lo, hi)``, planned at once (in a planner process)."""
        frames, tally = self.stream(stories)
        return Planned(list(frames), tally)


def story_chunks(include_partial: bool, at_least: int = 1) -> list[tuple[int, int]]:
    """Story id ranges ``[lo, hi)`` covering every story that may be exported, about
    ``CHUNK_STORIES`` of them in each when ids are dense, and ``at_least`` ranges when there
    are that many stories. Only stories are counted (a small, cheap query), so planners start
    before the frames are."""
    bounds = Story.objects.filter(
        status__in=story_statuses(include_partial=include_partial)
    ).aggregate(lo=Min("id"), hi=Max("id"), stories=Count("id"))
    if not bounds["stories"]:
        return []
    lo, hi = bounds["lo"], bounds["hi"] + 1
    chunks = max(math.ceil(bounds["stories"] / CHUNK_STORIES), min(at_least, bounds["stories"]))
    width = max(1, math.ceil((hi - lo) / chunks))
    return [(start, min(start + width, hi)) for start in range(lo, hi, width)]


def can_fork_planners() -> bool:
    """Planner processes see only committed rows, through their own connections: not inside
    a transaction (a test's, or an ``atomic`` block around the export), not with an in-memory
    SQLite database, and only where ``fork`` exists."""
    if not hasattr(os, "fork"):
        return False
    if any(conn.in_atomic_block for conn in connections.all(initialized_only=True)):
        return False
    default: Any = connections["default"]
    return not (default.vendor == "sqlite" and default.is_in_memory_db())


# Connections a planner inherited from the exporting process. They are never used or closed
# there: closing one would end the exporting process's own database session (PostgreSQL's
# terminate message goes down the shared socket). Planners leave with os._exit, which closes
# the descriptors without a word.
_INHERITED: list[Any] = []


def _forget_inherited_connections() -> None:
    for conn in connections.all(initialized_only=True):
        _INHERITED.append(conn.connection)
        conn.connection = None


class Planners:
    """Forked planner processes, each fed story ranges through its own pipe; ``results``
    yields their work in story order."""

    def __init__(self, count: int, selection: Selection) -> None:
        self.selection = selection
        self.pids: list[int] = []
        self.inboxes: list[Connection] = []
        self.outboxes: dict[Connection, int] = {}  # reply pipe → planner number
        try:
            for _ in range(count):
                self._fork()
        except BaseException:
            self.terminate()
            raise

    def _fork(self) -> None:
        child_in, parent_out = os.pipe()
        parent_in, child_out = os.pipe()
        pid = os.fork()
        if pid == 0:  # the planner
            os.close(parent_out)
            os.close(parent_in)
            for inbox in self.inboxes:  # earlier planners' pipes: not ours to hold open
                inbox.close()
            for outbox in self.outboxes:
                outbox.close()
            _serve(self.selection, Connection(child_in, writable=False), child_out)
        os.close(child_in)
        os.close(child_out)
        self.pids.append(pid)
        self.inboxes.append(Connection(parent_out, readable=False))
        self.outboxes[Connection(parent_in, writable=False)] = len(self.pids) - 1

    def results(self, chunks: list[tuple[int, int]]) -> Iterator[Planned]:
        """The planned chunks, in order. Each planner has at most ``AHEAD`` chunks to do, and
        results that come early wait here: memory holds a few chunks, never the dataset."""
        busy = [0] * len(self.pids)
        waiting: dict[int, Planned] = {}
        sent = 0
        for number in range(len(chunks)):
            while sent < len(chunks) and min(busy) < AHEAD:
                planner = busy.index(min(busy))
                self.inboxes[planner].send((sent, chunks[sent]))
                busy[planner] += 1
                sent += 1
            while number not in waiting:
                for planner, done, planned in self._replies():
                    busy[planner] -= 1
                    waiting[done] = planned
            yield waiting.pop(number)

    def _replies(self) -> Iterator[tuple[int, int, Planned]]:
        for outbox in wait(list(self.outboxes)):
            assert isinstance(outbox, Connection)
            planner = self.outboxes[outbox]
            try:
                reply = outbox.recv()
            except EOFError:
                self._died(planner)
            if reply[0] == "error":
                self.terminate()
                raise_reported(reply, "planner")
            yield planner, reply[1], reply[2]

    def _died(self, planner: int) -> NoReturn:
        _, status = os.waitpid(self.pids[planner], 0)
        self.pids[planner] = 0
        self.terminate()
        raise RuntimeError(
            f"export planner process {planner} died (exit code {os.waitstatus_to_exitcode(status)})"
        )

    def finish(self) -> None:
        """Let the planners go; all their results must have been taken (a planner whose result
        nobody reads would wait forever to send it)."""
        for inbox in self.inboxes:
            with contextlib.suppress(OSError):
                inbox.send(None)
        self._reap()

    def terminate(self) -> None:
        for pid in self.pids:
            if pid:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        self._reap()

    def _reap(self) -> None:
        for pid in self.pids:
            if pid:
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(pid, 0)
        self.pids = [0] * len(self.pids)
        for connection in [*self.inboxes, *self.outboxes]:
            connection.close()
        self.inboxes, self.outboxes = [], {}


def _serve(selection: Selection, inbox: Connection, outbox_fd: int) -> NoReturn:
    """A planner: plan the story ranges it is sent until ``None`` (or the exporting process is
    gone), then leave without running anything the exporting process registered."""
    code = 2
    try:
        # The exporting process (a Celery worker, a test runner) may have its own handlers.
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGQUIT, signal.SIGUSR1):
            signal.signal(signum, signal.SIG_DFL)
        _forget_inherited_connections()
        # Everything inherited goes out of the collector's sight: its collections would walk
        # (and so copy, page by page) the exporting process's memory shared with us.
        gc.freeze()

        def plan(message: Message) -> Message:
            number, stories = message
            return ("planned", number, selection.chunk(stories))

        code = 0 if serve(inbox, Connection(outbox_fd, readable=False), plan) else 1
    finally:
        os._exit(code)


@contextlib.contextmanager
def planned_in_order(selection: Selection, planners: int) -> Iterator[Iterator[Planned]]:
    """The planned frames of the export, in export order: from ``planners`` forked planner
    processes when there are some, the work is worth it and they can see the rows
    (``can_fork_planners``), from this process otherwise. Planners start at once."""
    parallel = planners > 0 and can_fork_planners()
    # Enough ranges for every planner to hold AHEAD of them, even in a small export.
    chunks = story_chunks(selection.include_partial, planners * AHEAD) if parallel else []
    if len(chunks) < 2:
        yield iter([selection.stream()])
        return
    pool = Planners(min(planners, len(chunks)), selection)
    logger.info("export: %d planner processes, %d story ranges", len(pool.pids), len(chunks))
    try:
        yield pool.results(chunks)
    except BaseException:
        pool.terminate()
        raise
    pool.finish()
