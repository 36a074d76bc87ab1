"""The frame writers of an export: image bytes go from storage to shards in writer processes.

Reading, checking (sha256) and writing the frame images, and hashing the shards, is most of an
export's work. The main process takes the planned samples (``planning``: metadata, image size)
in export order and *places* each: the shard it belongs to and its byte offset there, with the
same ``ShardCutter`` a single writer would use. Batches of consecutive samples then go to the
writers in turn; each writes its batch at its offset. When every batch of a closed shard is
written, one writer finishes the shard (its end-of-archive blocks) and hashes it. Placing alone
decides every byte, so the shards are byte-identical whatever the number of writers. OmniGen2
copies of the images are made by the writer that reads them anyway.

Writers are plain ``python -m`` subprocesses talking over pipes, not a ``multiprocessing`` pool:
Celery's prefork children are daemonic (multiprocessing refuses to start processes from them),
and spawning would re-import whatever script is ``__main__``. A pipe holds little, so the main
process is never more than a batch or two ahead of a writer and memory does not grow with the
dataset. ``workers=0`` writes in the main process, with the same code (used where images are not
plain files, and by the test that compares the two).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import NamedTuple, NoReturn

from synthesis.export import messages
from synthesis.export.messages import Message
from synthesis.export.options import ExportError
from synthesis.export.shards import (
    PieceWriter,
    ShardCutter,
    check_key,
    closed_size,
    fd_sha256,
    sample_pieces,
)

BATCH = 256  # samples per message to a writer, at most
BATCH_BYTES = 16 << 20  # and about this many image bytes: a writer holds its batch in memory
AHEAD = 2  # messages a writer may have waiting: one in hand, one in its pipe
PIPE_BYTES = 1 << 20  # room for AHEAD pickled batches, so that sending does not wait

ImageReader = Callable[[str, int], bytes]


class FrameSample(NamedTuple):
    """One frame as its writer needs it (small: no image bytes)."""

    key: str
    json: bytes
    txt: bytes
    image: str  # a file path (or a storage name for a reader that takes one)
    size: int  # bytes of the image when it was planned
    sha256: str  # the stored digest the image must still have
    copy_to: str  # where the OmniGen2 copy goes ("" for none)
    tar_bytes: int  # bytes the sample takes in a shard (its three members)


def read_file(path: str, size: int) -> bytes:
    """Read a whole file whose size is known (one allocation, no ``fstat``)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        data = os.read(fd, size + 1)  # one byte more: notices a file that grew
        while len(data) < size and (more := os.read(fd, size + 1 - len(data))):
            data += more
    finally:
        os.close(fd)
    return data


def checked_image(sample: FrameSample, read: ImageReader) -> bytes:
    """The image of ``sample``, refused unless it is exactly what was stored and planned."""
    try:
        image = read(sample.image, sample.size)
    except OSError as exc:
        raise ExportError(f"frame {sample.key}: cannot read its image ({exc})") from None
    if len(image) != sample.size:
        raise ExportError(f"frame {sample.key}: its image changed size while it was exported")
    if hashlib.sha256(image).hexdigest() != sample.sha256:
        raise ExportError(
            f"frame {sample.key}: stored image does not match its sha256 (storage corrupted?)"
        )
    return image


def _open(path: str) -> int:
    try:
        return os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
    except FileNotFoundError:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        return os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)


def write_batch(shard: str, offset: int, samples: list[FrameSample], read: ImageReader) -> None:
    """Write consecutive samples at ``offset`` of ``shard`` ("" for copies only)."""
    fd = _open(shard) if shard else -1
    try:
        out = PieceWriter(fd, offset) if shard else None
        for sample in samples:
            image = checked_image(sample, read)
            if out is not None:
                out.extend(
                    sample_pieces(
                        sample.key, (("json", sample.json), ("png", image), ("txt", sample.txt))
                    )
                )
            if sample.copy_to:
                _write_copy(sample.copy_to, image)
        if out is not None:
            out.flush()
    finally:
        if fd >= 0:
            os.close(fd)


def _write_copy(path: str, data: bytes) -> None:
    fd = _open(path)
    try:
        copy = PieceWriter(fd)
        copy.add(data)
        copy.flush()
    finally:
        os.close(fd)


def finish_shard(shard: str, members_size: int) -> str:
    """Add the end-of-archive blocks (zeros, by extending the file) and return its sha256."""
    fd = os.open(shard, os.O_RDWR)
    try:
        os.ftruncate(fd, closed_size(members_size))
        return fd_sha256(fd)
    finally:
        os.close(fd)


def handle(message: Message, read: ImageReader) -> Message:
    """One message of the main process, and the reply it waits for."""
    kind = message[0]
    if kind == "write":
        _, shard, offset, samples = message
        write_batch(shard, offset, samples, read)
        return ("written", shard)
    if kind == "finish":
        _, shard, size = message
        return ("shard", shard, finish_shard(shard, size))
    raise ValueError(f"unknown writer message {kind!r}")


def serve(inbox: Connection, outbox: Connection) -> None:
    """A writer process: answer the exporting process until it says stop (``messages``)."""
    if messages.serve(inbox, outbox, lambda message: handle(message, read_file)):
        outbox.send(("done",))


@dataclass
class _Stream:
    """The frames of one split on their way to shards."""

    cutter: ShardCutter
    name: str = ""  # the shard being filled, relative to the export
    shard: str = ""  # and its absolute path
    size: int = 0  # bytes planned into it so far
    batch_offset: int = 0  # where the pending batch starts
    pending: list[FrameSample] = field(default_factory=list)
    pending_bytes: int = 0


class FrameWriters:
    """Plan frame samples into shards (main process) and have writers write them."""

    def __init__(
        self,
        root: Path,
        *,
        max_bytes: int,
        shards: bool,
        workers: int,
        read: ImageReader = read_file,
    ) -> None:
        self.root = root
        self.max_bytes = max_bytes
        self.shards = shards
        self.digests: dict[Path, str] = {}
        self._read = read
        self._streams: dict[str, _Stream] = {}
        self._unwritten: Counter[str] = Counter()  # batches sent, not yet written, per shard
        self._closed: dict[str, int] = {}  # closed shards waiting for their batches → size
        self._pool = _Pool(workers) if workers > 0 else None

    def shard_name(self, split: str, number: int) -> str:
        return f"webdataset/{split}/frames-{number:05d}.tar"

    def add(self, split: str, sample: FrameSample) -> str:
        """Place one sample; return the shard it goes to (relative to the export) or ""."""
        check_key(sample.key)
        stream = self._streams.get(split)
        if stream is None:
            stream = self._streams[split] = _Stream(ShardCutter(self.max_bytes))
        name = ""
        if not (self.shards or sample.copy_to):
            return name  # nothing of the image leaves (a Parquet-only export): leave it unread
        if self.shards:
            tar_bytes = sample.tar_bytes
            number, opens = stream.cutter.place(tar_bytes)
            if opens:
                self._close_shard(stream)
                stream.name = self.shard_name(split, number)
                stream.shard = str(self.root / stream.name)
            stream.size += tar_bytes
            name = stream.name
        stream.pending.append(sample)
        stream.pending_bytes += sample.size
        if len(stream.pending) >= BATCH or stream.pending_bytes >= BATCH_BYTES:
            self._flush(stream)
        return name

    def _flush(self, stream: _Stream) -> None:
        if stream.pending:
            self._unwritten[stream.shard] += 1
            self._send(("write", stream.shard, stream.batch_offset, stream.pending))
            stream.pending, stream.pending_bytes = [], 0
            if self._closed:
                self._finish_ready()  # the replies that came in may have completed a shard
        stream.batch_offset = stream.size

    def _close_shard(self, stream: _Stream) -> None:
        if stream.shard:
            self._flush(stream)
            self._closed[stream.shard] = stream.size
            stream.shard, stream.size, stream.batch_offset = "", 0, 0
            self._finish_ready()

    def _send(self, message: Message) -> None:
        if self._pool is None:
            self._record(handle(message, self._read))
            return
        for reply in self._pool.send(message):
            self._record(reply)

    def _record(self, reply: Message) -> None:
        if reply[0] == "written":
            self._unwritten[reply[1]] -= 1
        elif reply[0] == "shard":
            self.digests[Path(reply[1])] = reply[2]

    def _finish_ready(self) -> None:
        """Have the closed shards whose batches are all written finished and hashed."""
        while ready := [s for s in self._closed if self._unwritten[s] == 0]:
            self._send(("finish", ready[0], self._closed.pop(ready[0])))

    def finish(self) -> dict[Path, str]:
        """Write what is planned, wait for the writers; the sha256 of every frame shard."""
        for stream in self._streams.values():
            self._flush(stream)
            self._close_shard(stream)
        if self._pool is not None:
            while self._closed or any(self._unwritten.values()):
                for reply in self._pool.wait_replies():
                    self._record(reply)
                self._finish_ready()
            for reply in self._pool.finish():
                self._record(reply)
        return self.digests

    def abort(self) -> None:
        if self._pool is not None:
            self._pool.terminate()


class _Pool:
    """Writer processes (``python -m synthesis.export.frame_writers``), each fed through its own
    pipe: a full pipe makes the main process wait, which bounds the work in flight."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.processes: list[subprocess.Popen[bytes]] = []
        self.inboxes: list[Connection] = []
        self.outboxes: dict[Connection, int] = {}  # reply pipe → writer number
        self.done: set[int] = set()
        self.busy: list[int] = []  # messages sent to each writer and not answered yet
        paths = (_ROOT, os.environ.get("PYTHONPATH", ""))
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in paths if p))
        try:
            for _ in range(size):
                self._start(env)
        except BaseException:
            self.terminate()
            raise

    def _start(self, env: dict[str, str]) -> None:
        child_in, parent_out = os.pipe()
        parent_in, child_out = os.pipe()
        # Linux: a larger pipe holds the next batch while the writer works on one; elsewhere,
        # or past the system's limit, sending only waits a little more.
        with contextlib.suppress(AttributeError, OSError):
            fcntl.fcntl(parent_out, fcntl.F_SETPIPE_SZ, PIPE_BYTES)
        try:
            process = subprocess.Popen(
                [sys.executable, "-m", _MODULE, str(child_in), str(child_out)],
                pass_fds=(child_in, child_out),
                env=env,
                stdin=subprocess.DEVNULL,
            )
        except BaseException:
            for fd in (parent_out, parent_in):
                os.close(fd)
            raise
        finally:
            os.close(child_in)
            os.close(child_out)
        self.outboxes[Connection(parent_in, writable=False)] = len(self.processes)
        self.inboxes.append(Connection(parent_out, readable=False))
        self.processes.append(process)
        self.busy.append(0)

    def send(self, message: Message) -> list[Message]:
        """Give ``message`` to the least busy writer, first waiting for one to have room;
        return the replies that came in meanwhile."""
        replies = self._replies(timeout=0)
        while min(self.busy) >= AHEAD:
            replies += self._replies(timeout=None)
        writer = self.busy.index(min(self.busy))
        self._send(writer, message)
        self.busy[writer] += 1
        return replies

    def _send(self, writer: int, message: Message | None) -> None:
        try:
            self.inboxes[writer].send(message)
        except OSError:  # the pipe broke: the writer is gone; its last words say why
            self._replies(timeout=1.0)
            self._died(writer)

    def wait_replies(self) -> list[Message]:
        return self._replies(timeout=None)

    def finish(self) -> list[Message]:
        replies: list[Message] = []
        for writer in range(self.size):
            self._send(writer, None)
        while len(self.done) < self.size:
            replies += self._replies(timeout=None)
        for process in self.processes:
            process.wait()  # each said "done" and is exiting
        self._close_pipes()
        return replies

    def _replies(self, timeout: float | None) -> list[Message]:
        replies: list[Message] = []
        for outbox in wait(list(self.outboxes), timeout=timeout):
            assert isinstance(outbox, Connection)
            writer = self.outboxes[outbox]
            try:
                reply = outbox.recv()
            except EOFError:
                del self.outboxes[outbox]
                if writer not in self.done:
                    self._died(writer)
                continue
            if reply[0] == "error":
                self.terminate()
                messages.raise_reported(reply, "writer")
            if reply[0] == "done":
                self.done.add(writer)
            else:
                self.busy[writer] -= 1
                replies.append(reply)
        return replies

    def _died(self, writer: int) -> NoReturn:
        code = self.processes[writer].wait()
        self.terminate()
        raise RuntimeError(f"export writer process {writer} died (exit code {code})")

    def terminate(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.kill()
        for process in self.processes:
            process.wait()
        self._close_pipes()

    def _close_pipes(self) -> None:
        for connection in [*self.inboxes, *self.outboxes]:
            connection.close()
        self.inboxes, self.outboxes = [], {}


_ROOT = str(Path(__file__).resolve().parents[2])  # the folder that holds the synthesis package
_MODULE = "synthesis.export.frame_writers"


if __name__ == "__main__":
    inbox, outbox = (int(fd) for fd in sys.argv[1:3])
    serve(Connection(inbox, writable=False), Connection(outbox, readable=False))
