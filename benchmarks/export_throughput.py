"""Export throughput and memory: N frames with small images → WebDataset shards.

Builds its own SQLite databases and media folder under ``--workdir`` (default
/tmp/hilapp-export-bench), one database per size (7,500 and 75,000 frames by default: stories of
ten frames, two characters per frame), then for each size:

- ``tar -cf`` of the same image files on the same disk (the baseline),
- ``export_dataset`` (WebDataset format) in a child process, reporting its own wall time and
  peak resident memory (``ru_maxrss``) and the largest peak of its writer processes (VmHWM),
  so the figures are not polluted by the parent.

Page-cache writeback makes single timings of a 1 GB write swing by 2-3x on a small VM, so every
timed run starts after ``sync`` and tar and export take turns, ``--repeat`` times each; the
medians are printed. Prints MB/s of both, the ratio (goal ≥ 0.8× tar), the peak memory at
each size (goal: flat), and the CPU seconds each used (user + system, the export's writer
processes included): on a machine with few cores the CPU total, not the wall time of one
process, is what bounds the export.

    .venv/bin/python benchmarks/export_throughput.py [--sizes 7500,75000] [--image-side 64]
        [--repeat 3] [--workers N] [--planners N]
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import hashlib
import io
import json
import os
import random
import resource
import shutil
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FRAMES_PER_STORY = 10
CHARS_PER_STORY = 3


def database(workdir: Path, size: int, side: int) -> Path:
    return workdir / f"bench-{size}-{side}px.sqlite3"


def django_env(workdir: Path, size: int, side: int) -> dict[str, str]:
    env = os.environ.copy()
    env.pop("CELERY_BROKER_URL", None)
    env.update(
        DJANGO_SETTINGS_MODULE="hilapp.settings.base",
        DATABASE_URL=f"sqlite:///{database(workdir, size, side)}",
        HILAPP_VAR_DIR=str(workdir / "var"),
        MEDIA_ROOT=str(workdir / "media"),
        DEBUG="0",
        HILAPP_TESTING="1",
        PYTHONPATH=str(ROOT),
    )
    return env


def setup_django() -> None:
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()


# --- child: images ---------------------------------------------------------------------------


def make_images(media: Path, count: int, side: int) -> list[tuple[str, str]]:
    """``count`` distinct noise PNGs under media/frames; (storage name, sha256) of each."""
    from PIL import Image

    index = media / f"images-{side}.json"
    if index.exists():
        names = json.loads(index.read_text())
        if len(names) >= count:
            return [tuple(n) for n in names[:count]]  # type: ignore[misc]
    rng = random.Random(1)
    names = []
    for i in range(count):
        image = Image.frombytes("RGB", (side, side), rng.randbytes(side * side * 3))
        buffer = io.BytesIO()
        image.save(buffer, format="PNG", compress_level=0)  # noise does not compress anyway
        data = buffer.getvalue()
        digest = hashlib.sha256(data).hexdigest()
        name = f"frames/{digest[:2]}/{digest}.png"
        path = media / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        names.append((name, digest))
        if i and i % 10000 == 0:
            print(f"  {i} images", file=sys.stderr, flush=True)
    index.write_text(json.dumps(names))
    return names


def populate(size: int, side: int, media: Path) -> None:
    setup_django()
    from django.core.management import call_command

    from synthesis.models import Batch, Character, Frame, FrameCharacter, Story, StoryCast
    from synthesis.states import (
        ApprovalPath,
        BatchKind,
        CharacterStatus,
        FrameStatus,
        StoryStatus,
    )

    call_command("migrate", verbosity=0)
    images = make_images(media, size, side)
    n_stories = size // FRAMES_PER_STORY
    n_chars = max(CHARS_PER_STORY, n_stories // 5)
    batch = Batch.objects.create(kind=BatchKind.FRAMES, requested=size)
    chars = Character.objects.bulk_create(
        Character(
            batch=batch,
            index=i,
            cid=f"C1-{i:05d}",
            status=CharacterStatus.LOCKED,
            subject_category=f"subject{i % 8}",
            subject_type=f"type{i % 40}",
            profession_category=f"prof{i % 4}",
            profession=f"profession{i % 30}",
            name=f"Char {i}",
            template=images[i % len(images)][0],
        )
        for i in range(n_chars)
    )
    stories = Story.objects.bulk_create(
        Story(
            batch=batch,
            index=i,
            status=StoryStatus.COMPLETE,
            genre=f"genre{i % 6}",
            title=f"Story {i}",
        )
        for i in range(n_stories)
    )
    rng = random.Random(2)
    casts: list[list[Character]] = []
    cast_rows = []
    for story in stories:
        cast = rng.sample(chars, CHARS_PER_STORY)
        casts.append(cast)
        cast_rows += [StoryCast(story=story, character=c, order=o) for o, c in enumerate(cast)]
    StoryCast.objects.bulk_create(cast_rows, batch_size=5000)
    frames = Frame.objects.bulk_create(
        (
            Frame(
                story=story,
                index=j,
                frame_text=f"Frame {j} of story {story.pk}: a scene.",
                status=FrameStatus.APPROVED,
                approval_path=ApprovalPath.GATE,
                image=images[k * FRAMES_PER_STORY + j][0],
                image_sha256=images[k * FRAMES_PER_STORY + j][1],
                synthesizer_model="sim:frame",
                arbitrator_model="sim:iqcc",
            )
            for k, story in enumerate(stories)
            for j in range(FRAMES_PER_STORY)
        ),
        batch_size=5000,
    )
    FrameCharacter.objects.bulk_create(
        (
            FrameCharacter(
                frame=frame,
                character=c,
                slot=s,
                pid=f"pose.p{(n + s) % 28}",
                eid=f"expr.e{(n + s) % 12}",
                ctag=f"comp.c{n % 21}",
            )
            for n, frame in enumerate(frames)
            for s, c in enumerate(casts[n // FRAMES_PER_STORY][:2])
        ),
        batch_size=5000,
    )


# --- child: export ---------------------------------------------------------------------------


def _is_writer(pid: int) -> bool:
    """Whether ``pid`` runs the writer module. Between fork and exec a child still shares its
    parent's memory (and reports the parent's peak): it is not a writer yet."""
    with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
        return b"synthesis.export.frame_writers" in cmdline.read()


def _writer_peak_kib(pid: int) -> int:
    """A writer's peak resident memory (VmHWM; 0 once it has exited, or for another child).
    ``ru_maxrss`` would count the fork-to-exec window (an occasional 140 MiB "writer")."""
    try:
        if not _is_writer(pid):
            return 0
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _forked_private_kib(pid: int) -> int:
    """The memory a forked child (a planner, a plot drawer) has of its own: its private pages
    (those it allocated or copied on write). Its VmHWM would also count every page it still
    shares with the exporting process."""
    try:
        if _is_writer(pid):
            return 0
        with open(f"/proc/{pid}/smaps_rollup") as rollup:
            return sum(
                int(line.split()[1]) for line in rollup if line.startswith(("Private_", "Swap:"))
            )
    except OSError:
        return 0


def watch_children(
    writer_peaks: list[int], forked_peaks: list[int], stop: threading.Event
) -> threading.Thread:
    """Sample the peak memory of this process's children until ``stop``: the writers' VmHWM,
    and the private memory of the forked planners and plot drawers."""

    def children() -> list[int]:
        pids: list[int] = []
        for listing in glob.glob("/proc/self/task/*/children"):
            with contextlib.suppress(OSError), open(listing) as handle:
                pids += [int(pid) for pid in handle.read().split()]
        return pids

    def sample() -> None:
        while not stop.wait(0.05):
            for pid in children():
                writer_peaks.append(_writer_peak_kib(pid))
                forked_peaks.append(_forked_private_kib(pid))

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    return thread


def _cpu_seconds() -> float:
    """User + system CPU time of this process and of its waited-for children (the writers,
    or ``tar``)."""
    own, children = (
        resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
    )
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def export(out: Path, workers: int | None, planners: int | None) -> None:
    setup_django()
    from synthesis.export.options import ExportOptions
    from synthesis.export.service import dataset_export

    writer_peaks, forked_peaks = [0], [0]
    stop = threading.Event()
    watcher = watch_children(writer_peaks, forked_peaks, stop)

    os.sync()
    cpu_before = _cpu_seconds()
    started = time.perf_counter()
    manifest = dataset_export(
        out=out,
        options=ExportOptions(formats=("webdataset",), shard_max_bytes=256 << 20),
        workers=workers,
        planners=planners,
    )
    seconds = time.perf_counter() - started
    cpu = _cpu_seconds() - cpu_before
    stop.set()
    watcher.join()
    shard_bytes = sum(f["bytes"] for n, f in manifest["files"].items() if n.endswith(".tar"))
    print(
        json.dumps(
            {
                "frames": manifest["counts"]["frames"],
                "seconds": seconds,
                "cpu_seconds": cpu,
                "bytes": shard_bytes,
                "maxrss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                "writer_maxrss_kib": max(writer_peaks),
                "forked_private_kib": max(forked_peaks),
            }
        )
    )


# --- parent ----------------------------------------------------------------------------------


def run_child(env: dict[str, str], *args: str) -> str:
    proc = subprocess.run(
        [sys.executable, __file__, "--child", *args],
        env=env,
        cwd=ROOT,
        text=True,
        stdout=subprocess.PIPE,
        check=True,
    )
    return proc.stdout


def tar_baseline(workdir: Path, media: Path, size: int, side: int) -> tuple[float, int, float]:
    """Seconds, bytes and CPU seconds of ``tar -cf`` over the same image files."""
    names = [n for n, _ in json.loads((media / f"images-{side}.json").read_text())[:size]]
    listing = workdir / f"list-{size}.txt"
    listing.write_text("\n".join(names) + "\n")
    target = workdir / f"baseline-{size}.tar"
    os.sync()
    cpu_before = _cpu_seconds()
    started = time.perf_counter()
    subprocess.run(["tar", "-cf", str(target), "-C", str(media), "-T", str(listing)], check=True)
    seconds = time.perf_counter() - started
    cpu = _cpu_seconds() - cpu_before
    nbytes = target.stat().st_size
    target.unlink()
    os.sync()
    return seconds, nbytes, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="7500,75000")
    parser.add_argument("--image-side", type=int, default=64, help="noise PNG side (pixels)")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/hilapp-export-bench"))
    parser.add_argument("--repeat", type=int, default=3, help="timed runs of each (median)")
    parser.add_argument(
        "--workers", type=int, default=None, help="export writer processes (default: setting)"
    )
    parser.add_argument(
        "--planners", type=int, default=None, help="export planner processes (default: setting)"
    )
    parser.add_argument("--child", nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        if args.child[0] == "populate":
            populate(int(args.child[1]), int(args.child[2]), Path(args.child[3]))
        else:
            export(
                Path(args.child[1]),
                None if args.child[2] == "-" else int(args.child[2]),
                None if args.child[3] == "-" else int(args.child[3]),
            )
        return
    workdir: Path = args.workdir
    media = workdir / "media"
    media.mkdir(parents=True, exist_ok=True)
    sizes = [int(s) for s in args.sizes.split(",")]
    results = []
    for size in sorted(sizes, reverse=True):  # the largest makes every image once
        env = django_env(workdir, size, args.image_side)
        db = database(workdir, size, args.image_side)
        if not db.exists():
            started = time.perf_counter()
            run_child(env, "populate", str(size), str(args.image_side), str(media))
            print(
                f"populated {size} frames in {time.perf_counter() - started:.0f}s", file=sys.stderr
            )
    workers = "-" if args.workers is None else str(args.workers)
    planners = "-" if args.planners is None else str(args.planners)
    for size in sorted(sizes):
        env = django_env(workdir, size, args.image_side)
        out = workdir / f"out-{size}"
        runs, tars = [], []
        for _ in range(args.repeat):
            tars.append(tar_baseline(workdir, media, size, args.image_side))
            shutil.rmtree(out, ignore_errors=True)
            runs.append(
                json.loads(run_child(env, "export", str(out), workers, planners).splitlines()[-1])
            )
            shutil.rmtree(out, ignore_errors=True)
        tar_s = statistics.median(t for t, _, _ in tars)
        tar_bytes = tars[0][1]
        figures = dict(runs[0])
        figures["seconds"] = statistics.median(r["seconds"] for r in runs)
        figures["cpu_seconds"] = statistics.median(r["cpu_seconds"] for r in runs)
        figures["tar_cpu_seconds"] = statistics.median(c for _, _, c in tars)
        for peak in ("maxrss_kib", "writer_maxrss_kib", "forked_private_kib"):
            figures[peak] = max(r[peak] for r in runs)
        print(
            f"{size} frames: export s {[round(r['seconds'], 2) for r in runs]}, "
            f"tar s {[round(t, 2) for t, _, _ in tars]}",
            file=sys.stderr,
        )
        exp_mbs = figures["bytes"] / figures["seconds"] / 1e6
        tar_mbs = tar_bytes / tar_s / 1e6
        results.append((size, figures, exp_mbs, tar_mbs, tar_s, tar_bytes))
    print(
        f"{'frames':>8} {'export MB':>10} {'export s':>9} {'export MB/s':>12} "
        f"{'tar MB':>8} {'tar s':>7} {'tar MB/s':>9} {'ratio':>6} {'peak RSS MiB':>13} "
        f"{'writer MiB':>11} {'forked MiB':>11} {'export CPU s':>13} {'tar CPU s':>10}"
    )
    for size, fig, exp_mbs, tar_mbs, tar_s, tar_bytes in results:
        print(
            f"{size:>8} {fig['bytes'] / 1e6:>10.1f} {fig['seconds']:>9.2f} {exp_mbs:>12.1f} "
            f"{tar_bytes / 1e6:>8.1f} {tar_s:>7.2f} {tar_mbs:>9.1f} "
            f"{exp_mbs / tar_mbs:>6.2f} {fig['maxrss_kib'] / 1024:>13.1f} "
            f"{fig['writer_maxrss_kib'] / 1024:>11.1f} {fig['forked_private_kib'] / 1024:>11.1f} "
            f"{fig['cpu_seconds']:>13.2f} "
            f"{fig['tar_cpu_seconds']:>10.2f}"
        )
    if len(results) >= 2:
        for peak, what in (
            ("maxrss_kib", "exporting process"),
            ("writer_maxrss_kib", "writer"),
            ("forked_private_kib", "forked planner or plot drawer (private)"),
        ):
            small, large = results[0][1][peak], results[-1][1][peak]
            print(
                f"peak memory of the {what}, {results[-1][0]} vs {results[0][0]} frames: "
                f"{large / small:.2f}x ({(large - small) / 1024:+.1f} MiB)"
            )


if __name__ == "__main__":
    main()
