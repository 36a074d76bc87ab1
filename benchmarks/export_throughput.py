"""Export throughput and memory at the data's real size: 1024² PNG frames of about 1 MB.

Builds its data once under ``--workdir`` (default /tmp/hilapp-export-bench-1024):

- a media folder of content-addressed PNGs (``frames/ab/<sha256>.png``, as
  ``synthesis.artifacts`` stores them): ``--bases`` distinct 1024² images (a colour gradient with
  a little noise: about 1 MB as PNG), each made unique per frame by a ``tEXt`` chunk, so every
  frame is a file of its own with its own digest;
- one SQLite database per size (stories of ten frames, two characters per frame).

Then, on local disk, for each of ``--sizes``: ``tar -cf`` of the same image files against the
export (WebDataset format, ``HILAPP_EXPORT_READERS`` threads), each in a child process, taking
turns ``--repeat`` times after ``sync``; the medians are printed. On S3, for each of
``--s3-sizes``: the same frames uploaded to a local S3-compatible server (``tests/s3.py``: moto
in its own process), exported with ``HILAPP_EXPORT_READERS`` threads against one (serial
reads), for each of ``--s3-latency-ms``: a delay added to every request, since a server on
localhost answers in about a millisecond where a bucket across a network takes tens.

Prints seconds, MB/s, the ratio to ``tar`` or to serial reads, and the peak resident memory of
the exporting process (``ru_maxrss``: the reading threads included).

    .venv/bin/python benchmarks/export_throughput.py [--sizes 750,7500] [--s3-sizes 750]
        [--s3-latency-ms 0,20] [--repeat 3] [--readers N]
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import random
import resource
import shutil
import statistics
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FRAMES_PER_STORY = 10
CHARS_PER_STORY = 3
SIDE = 1024


def django_env(workdir: Path, size: int) -> dict[str, str]:
    env = os.environ.copy()
    for name in ("CELERY_BROKER_URL", "DATABASE_URL"):
        env.pop(name, None)
    env.update(
        DJANGO_SETTINGS_MODULE="hilapp.settings.base",
        DATABASE_URL=f"sqlite:///{workdir / f'bench-{size}.sqlite3'}",
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


# --- images ----------------------------------------------------------------------------------


def base_image(seed: int) -> bytes:
    """A 1024² RGB gradient with a little noise: compresses like a rendered frame (~1 MB)."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:SIDE, 0:SIDE] / (SIDE - 1)
    phase = rng.uniform(0, 1, 3)
    channels = [
        (x * a + y * (1 - a) + p) % 1.0 * 255
        for a, p in zip(rng.uniform(0, 1, 3), phase, strict=True)
    ]
    pixels = np.stack(channels, -1) + rng.normal(0, 0.8, (SIDE, SIDE, 3))
    buffer = io.BytesIO()
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def with_text_chunk(png: bytes, text: bytes) -> bytes:
    """The same image with a ``tEXt`` chunk after its header: other bytes, same pixels."""
    body = b"tEXt" + b"frame\0" + text
    chunk = struct.pack(">I", len(body) - 4) + body + struct.pack(">I", zlib.crc32(body))
    end_of_header = 8 + 25  # signature, then the IHDR chunk (length, type, 13 bytes, crc)
    return png[:end_of_header] + chunk + png[end_of_header:]


def make_images(media: Path, count: int, bases: int) -> list[tuple[str, str]]:
    """``count`` distinct frame PNGs under media/frames; (storage name, sha256) of each."""
    index = media / "images.json"
    names: list[tuple[str, str]] = []
    if index.exists():
        names = [tuple(n) for n in json.loads(index.read_text())]  # type: ignore[misc]
        if len(names) >= count:
            return names[:count]
    started = time.perf_counter()
    images = [base_image(seed) for seed in range(bases)]
    print(f"  {bases} base images in {time.perf_counter() - started:.0f}s", file=sys.stderr)
    for i in range(len(names), count):
        data = with_text_chunk(images[i % bases], str(i).encode())
        digest = hashlib.sha256(data).hexdigest()
        name = f"frames/{digest[:2]}/{digest}.png"
        path = media / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        names.append((name, digest))
    index.write_text(json.dumps(names))
    return names


def populate(size: int, media: Path, bases: int) -> None:
    setup_django()
    from django.core.management import call_command

    from synthesis.models import Batch, Character, Frame, FrameCharacter, Story, StoryCast
    from synthesis.states import ApprovalPath, BatchKind, CharacterStatus, FrameStatus, StoryStatus

    call_command("migrate", verbosity=0)
    images = make_images(media, size, bases)
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
        Story(batch=batch, index=i, status=StoryStatus.COMPLETE, genre=f"g{i % 6}", title=f"S{i}")
        for i in range(n_stories)
    )
    rng = random.Random(2)
    casts = [rng.sample(chars, CHARS_PER_STORY) for _ in stories]
    StoryCast.objects.bulk_create(
        (
            StoryCast(story=story, character=c, order=o)
            for story, cast in zip(stories, casts, strict=True)
            for o, c in enumerate(cast)
        ),
        batch_size=5000,
    )
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


def s3_storages(bucket: dict[str, str], readers: int) -> dict[str, object]:
    from botocore.config import Config
    from django.conf import settings

    options = {
        "bucket_name": bucket["AWS_STORAGE_BUCKET_NAME"],
        "endpoint_url": bucket["AWS_S3_ENDPOINT_URL"],
        "access_key": bucket["AWS_ACCESS_KEY_ID"],
        "secret_key": bucket["AWS_SECRET_ACCESS_KEY"],
        "region_name": bucket["AWS_S3_REGION_NAME"],
        # One connection per reading thread (botocore keeps 10 by default).
        "client_config": Config(max_pool_connections=max(10, readers)),
    }
    default = {"BACKEND": "storages.backends.s3.S3Storage", "OPTIONS": options}
    return {**settings.STORAGES, "default": default}


def add_latency(seconds: float) -> None:
    """Delay every request botocore sends by ``seconds``: a local server answers in about a
    millisecond, a bucket across a network in tens (the latency parallel reads overlap)."""
    from botocore.endpoint import Endpoint

    send = Endpoint._send

    def delayed(self: Endpoint, request: object) -> object:
        time.sleep(seconds)
        return send(self, request)

    Endpoint._send = delayed  # type: ignore[method-assign]


def export(out: Path, readers: int | None, bucket: dict[str, str] | None, latency: float) -> None:
    setup_django()
    if latency:
        add_latency(latency)
    from django.conf import settings
    from django.test import override_settings

    from synthesis.export.options import ExportOptions
    from synthesis.export.service import dataset_export

    threads = settings.HILAPP_EXPORT_READERS if readers is None else readers
    storages = s3_storages(bucket, threads) if bucket else settings.STORAGES
    os.sync()
    started = time.perf_counter()
    with override_settings(STORAGES=storages):
        manifest = dataset_export(
            out=out, options=ExportOptions(formats=("webdataset",)), readers=threads
        )
    seconds = time.perf_counter() - started
    shard_bytes = sum(f["bytes"] for n, f in manifest["files"].items() if n.endswith(".tar"))
    print(
        json.dumps(
            {
                "frames": manifest["counts"]["frames"],
                "readers": threads,
                "seconds": seconds,
                "bytes": shard_bytes,
                "maxrss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
            }
        )
    )


# --- parent ----------------------------------------------------------------------------------


def run_child(env: dict[str, str], *args: str) -> dict[str, float]:
    proc = subprocess.run(
        [sys.executable, __file__, "--child", *args],
        env=env,
        cwd=ROOT,
        text=True,
        stdout=subprocess.PIPE,
        check=True,
    )
    return json.loads(proc.stdout.splitlines()[-1])  # type: ignore[no-any-return]


def tar_baseline(workdir: Path, media: Path, size: int) -> tuple[float, int]:
    """Seconds and bytes of ``tar -cf`` over the same image files."""
    names = [n for n, _ in json.loads((media / "images.json").read_text())[:size]]
    listing = workdir / f"list-{size}.txt"
    listing.write_text("\n".join(names) + "\n")
    target = workdir / f"baseline-{size}.tar"
    os.sync()
    started = time.perf_counter()
    subprocess.run(["tar", "-cf", str(target), "-C", str(media), "-T", str(listing)], check=True)
    seconds = time.perf_counter() - started
    nbytes = target.stat().st_size
    target.unlink()
    os.sync()
    return seconds, nbytes


def prepare(workdir: Path, size: int, bases: int) -> dict[str, str]:
    env = django_env(workdir, size)
    if not (workdir / f"bench-{size}.sqlite3").exists():
        started = time.perf_counter()
        args = ("populate", str(size), str(workdir / "media"), str(bases))
        subprocess.run([sys.executable, __file__, "--child", *args], env=env, cwd=ROOT, check=True)
        print(f"populated {size} frames in {time.perf_counter() - started:.0f}s", file=sys.stderr)
    return env


def fits_on_disk(workdir: Path, size: int) -> bool:
    """Whether the images, one export and one tar of ``size`` frames fit in the free space."""
    need = size * 1.1e6 * 3
    free = shutil.disk_usage(workdir).free
    if need > free:
        print(f"skipping {size} frames: needs ~{need / 1e9:.0f} GB, {free / 1e9:.0f} GB free")
    return need <= free


def bench_local(args: argparse.Namespace, readers: str) -> None:
    print(
        f"{'frames':>7} {'export MB':>9} {'export s':>8} {'MB/s':>6} {'tar MB':>8} {'tar s':>6} "
        f"{'MB/s':>6} {'ratio':>5} {'export peak RSS MiB':>19}"
    )
    for size in args.sizes:
        if not fits_on_disk(args.workdir, size):
            continue
        env = prepare(args.workdir, size, args.bases)
        out = args.workdir / f"out-{size}"
        runs, tars = [], []
        for _ in range(args.repeat):
            tars.append(tar_baseline(args.workdir, args.workdir / "media", size))
            shutil.rmtree(out, ignore_errors=True)
            runs.append(run_child(env, "export", str(out), readers, "", "0"))
            shutil.rmtree(out, ignore_errors=True)
        seconds = statistics.median(r["seconds"] for r in runs)
        tar_s = statistics.median(t[0] for t in tars)
        mbs, tar_mbs = runs[0]["bytes"] / seconds / 1e6, tars[0][1] / tar_s / 1e6
        print(
            f"{size:>7} {runs[0]['bytes'] / 1e6:>9.0f} {seconds:>8.2f} {mbs:>6.0f} "
            f"{tars[0][1] / 1e6:>8.0f} {tar_s:>6.2f} {tar_mbs:>6.0f} {mbs / tar_mbs:>5.2f} "
            f"{max(r['maxrss_kib'] for r in runs) / 1024:>19.1f}"
            f"   (export s {[round(r['seconds'], 2) for r in runs]}, "
            f"tar s {[round(t[0], 2) for t in tars]}; {runs[0]['readers']} readers)",
            flush=True,
        )


def bench_s3(args: argparse.Namespace, readers: str) -> None:
    sys.path.insert(0, str(ROOT))
    from tests.s3 import LocalS3

    server = LocalS3().start(log=args.workdir / "moto.log")
    try:
        print(
            f"{'frames':>7} {'latency ms':>10} {'MB':>6} {'parallel s':>10} {'MB/s':>6} "
            f"{'serial s':>8} {'MB/s':>6} {'speed-up':>8} {'peak RSS MiB (parallel, serial)':>31}"
        )
        for size in args.s3_sizes:
            env = prepare(args.workdir, size, args.bases)
            bucket = server.bucket()
            started = time.perf_counter()
            upload(server, bucket["AWS_STORAGE_BUCKET_NAME"], args.workdir / "media", size)
            print(f"  uploaded in {time.perf_counter() - started:.0f}s", file=sys.stderr)
            for latency in args.s3_latency_ms:
                bench_s3_size(args, env, bucket, size, readers, latency)
    finally:
        server.stop()


def bench_s3_size(
    args: argparse.Namespace,
    env: dict[str, str],
    bucket: dict[str, str],
    size: int,
    readers: str,
    latency: int,
) -> None:
    out = args.workdir / f"out-s3-{size}"
    parallel, serial = [], []
    for _ in range(args.repeat):
        for runs, threads in ((parallel, readers), (serial, "1")):
            shutil.rmtree(out, ignore_errors=True)
            where = json.dumps(bucket)
            runs.append(run_child(env, "export", str(out), threads, where, str(latency)))
    shutil.rmtree(out, ignore_errors=True)
    p_s = statistics.median(r["seconds"] for r in parallel)
    s_s = statistics.median(r["seconds"] for r in serial)
    nbytes = parallel[0]["bytes"]
    p_runs = [round(r["seconds"], 2) for r in parallel]
    s_runs = [round(r["seconds"], 2) for r in serial]
    print(
        f"{size:>7} {latency:>10} {nbytes / 1e6:>6.0f} {p_s:>10.2f} {nbytes / p_s / 1e6:>6.0f} "
        f"{s_s:>8.2f} {nbytes / s_s / 1e6:>6.0f} {s_s / p_s:>8.2f} "
        f"{max(r['maxrss_kib'] for r in parallel) / 1024:>15.1f}, "
        f"{max(r['maxrss_kib'] for r in serial) / 1024:.1f}"
        f"   ({parallel[0]['readers']} readers: s {p_runs}; 1 reader: s {s_runs})",
        flush=True,
    )


def upload(server: object, bucket: str, media: Path, size: int) -> None:
    """The images of the first ``size`` frames and the templates, under their storage names."""
    from concurrent.futures import ThreadPoolExecutor

    import boto3
    from botocore.config import Config

    from tests.s3 import ACCESS_KEY, REGION, SECRET_KEY

    names = [n for n, _ in json.loads((media / "images.json").read_text())[:size]]
    client = boto3.client(
        "s3",
        endpoint_url=server.endpoint,  # type: ignore[attr-defined]
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
        region_name=REGION,
        config=Config(max_pool_connections=16),
    )

    def put(name: str) -> None:
        client.put_object(Bucket=bucket, Key=name, Body=(media / name).read_bytes())

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(put, names))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="750,7500", help="frames, local disk (comma-separated)")
    parser.add_argument("--s3-sizes", default="750", help="frames, local S3 ('' for none)")
    parser.add_argument(
        "--s3-latency-ms", default="0,20", help="added to every S3 request (comma-separated)"
    )
    parser.add_argument("--bases", type=int, default=100, help="distinct base images")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/hilapp-export-bench-1024"))
    parser.add_argument("--repeat", type=int, default=3, help="timed runs of each (median)")
    parser.add_argument("--readers", type=int, default=None, help="default: the setting")
    parser.add_argument("--child", nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        if args.child[0] == "populate":
            populate(int(args.child[1]), Path(args.child[2]), int(args.child[3]))
        else:
            readers = None if args.child[2] == "-" else int(args.child[2])
            bucket = json.loads(args.child[3] or "null")
            export(Path(args.child[1]), readers, bucket, float(args.child[4]) / 1000)
        return
    args.sizes = [int(s) for s in args.sizes.split(",") if s]
    args.s3_sizes = [int(s) for s in args.s3_sizes.split(",") if s]
    args.s3_latency_ms = [int(s) for s in args.s3_latency_ms.split(",") if s]
    args.workdir.mkdir(parents=True, exist_ok=True)
    readers = "-" if args.readers is None else str(args.readers)
    print(f"# {os.cpu_count()} CPUs; 1024² PNG frames; workdir {args.workdir}")
    if args.sizes:
        print("# local disk: export (WebDataset) vs tar -cf of the same image files")
        bench_local(args, readers)
    if args.s3_sizes:
        print("# local S3 (moto server): export with the default readers vs 1 reader")
        bench_s3(args, readers)


if __name__ == "__main__":
    main()
