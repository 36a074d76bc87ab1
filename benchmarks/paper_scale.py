"""The three phases through real worker processes on PostgreSQL + Redis, and the paper's scale.

The simulator at zero latency (no API keys, ``HILAPP_SIM_LATENCY_MS=0``) stands in for every
model, so what is measured is the orchestration: tasks, transitions, the ledger, the gates,
the images written to storage. The workers are started as production starts them
(``python -m hilapp.processes worker-default``, prefork, ``--concurrency``); the benchmark
applies the human decisions as ``benchmarks/pipeline_simulation.py`` does (HV1 locks every
survivor, HV2 approves every valid script, HV3 regenerates a hard-failed frame up to
``--max-regenerations`` times, then discards it) while the workers run.

SQL queries are counted inside the workers: a ``sitecustomize`` put on the workers'
``PYTHONPATH`` (a temporary folder) connects Celery's ``task_prerun``/``task_postrun`` signals,
installs a Django ``execute_wrapper`` on each worker's connection and adds the count to a Redis
counter after every task. This counts exactly the statements Django sends (including those of
``on_commit`` hooks run inside a task), on any PostgreSQL, with no server setting
(``pg_stat_statements`` needs a restart with ``shared_preload_libraries``; ``pg_stat_database``
counts transactions and rows, not statements). The driver's own queries (the HV decisions) are
counted the same way, separately.

Prints per phase and in total: wall seconds, frames/s, model calls/s, SQL queries per model call,
worker CPU ms per model call (user + system of the worker and its pool children,
``/proc/<pid>/stat``), and the projected time for the paper's 2,000 characters and 10,000
stories (each phase's measured time per unit, scaled linearly).

    .venv/bin/python benchmarks/paper_scale.py --characters 20 --stories 30
    .venv/bin/python benchmarks/paper_scale.py --paper      # 2,000 CIDs, 10,000 stories
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from api_concurrency import (  # noqa: E402 - after the path set-up
    Processes,
    flush_redis,
    recreate_database,
    tree_cpu_seconds,
    tree_pids,
)

PAPER_CHARACTERS = 2_000
PAPER_STORIES = 10_000
QUERIES_KEY = "hbench:paper_scale:queries"
TASKS_KEY = "hbench:paper_scale:tasks"
POLL_S = 0.5

# Runs at the start of every Python process of the workers (PYTHONPATH); only counts when
# HILAPP_COUNT_QUERIES=1. The Redis URL comes from the environment, as the workers' broker does.
SITECUSTOMIZE = f'''
import os

if os.environ.get("HILAPP_COUNT_QUERIES") == "1":
    from celery import signals

    _count = [0]
    _redis = []

    def _counter(execute, sql, params, many, context):
        _count[0] += 1
        return execute(sql, params, many, context)

    @signals.task_prerun.connect(weak=False)
    def _install_counter(**kwargs):
        from django.db import connection

        if _counter not in connection.execute_wrappers:
            connection.execute_wrappers.append(_counter)

    @signals.task_postrun.connect(weak=False)
    def _report_count(**kwargs):
        if not _redis:
            import redis

            _redis.append(redis.Redis.from_url(os.environ["CELERY_BROKER_URL"]))
        count, _count[0] = _count[0], 0
        pipe = _redis[0].pipeline()
        pipe.incrby("{QUERIES_KEY}", count)
        pipe.incr("{TASKS_KEY}")
        pipe.execute()
'''


class DriverQueries:
    """Counts the SQL statements this process sends (the benchmark's HV decisions)."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self, execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        self.count += 1
        return execute(sql, params, many, context)


def worker_env(args: argparse.Namespace, var_dir: str, site_dir: str) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("HILAPP_", "DB_", "OPENAI_", "GEMINI_", "CELERY_", "DIFFUSERS_"))
    }
    env.update(
        DJANGO_SETTINGS_MODULE="hilapp.settings.base",
        DATABASE_URL=args.database_url,
        CELERY_BROKER_URL=args.redis_url,
        SECRET_KEY="benchmark-only",
        HILAPP_VAR_DIR=var_dir,
        HILAPP_SIM_LATENCY_MS="0",
        HILAPP_TEMPLATE_SIZE=str(args.size),
        HILAPP_FRAME_SIZE=str(args.size),
        HILAPP_RETRY_BASE_S="0",
        HILAPP_AUDIT_RATE="0",
        HILAPP_NODE_NAME="bench",
        HILAPP_DEFAULT_CONCURRENCY=str(args.concurrency),
        HILAPP_COUNT_QUERIES="1",
        PYTHONPATH=os.pathsep.join(filter(None, [site_dir, os.environ.get("PYTHONPATH")])),
        PYTHONUNBUFFERED="1",
    )
    return env


class Meter:
    """Wall time, worker CPU, driver CPU, worker queries and ledger rows between two marks."""

    def __init__(self, worker_pid: int, redis_client: Any, driver: DriverQueries) -> None:
        self.worker_pid = worker_pid
        self.redis = redis_client
        self.driver = driver

    def mark(self) -> dict[str, float]:
        from synthesis.models import Frame, ModelCall

        usage = resource.getrusage(resource.RUSAGE_SELF)
        return {
            "t": time.monotonic(),
            "worker_cpu_s": tree_cpu_seconds(self.worker_pid),
            "driver_cpu_s": usage.ru_utime + usage.ru_stime,
            "worker_queries": int(self.redis.get(QUERIES_KEY) or 0),
            "worker_tasks": int(self.redis.get(TASKS_KEY) or 0),
            "driver_queries": self.driver.count,
            "model_calls": ModelCall.objects.count(),
            "frames_approved": Frame.objects.filter(status="approved").count(),
        }


def figures(name: str, start: dict[str, float], end: dict[str, float]) -> dict[str, Any]:
    d = {key: end[key] - start[key] for key in start}
    calls = max(d["model_calls"], 1)
    wall = max(d["t"], 1e-9)
    return {
        "phase": name,
        "wall_s": round(wall, 1),
        "model_calls": int(d["model_calls"]),
        "model_calls_per_s": round(d["model_calls"] / wall, 1),
        "frames_approved": int(d["frames_approved"]),
        "frames_per_s": round(d["frames_approved"] / wall, 2),
        "worker_tasks": int(d["worker_tasks"]),
        "sql_queries_per_call_workers": round(d["worker_queries"] / calls, 2),
        "sql_queries_driver": int(d["driver_queries"]),
        "worker_cpu_ms_per_call": round(1000 * d["worker_cpu_s"] / calls, 2),
        "driver_cpu_ms_per_call": round(1000 * d["driver_cpu_s"] / calls, 2),
        "worker_cpu_s": round(d["worker_cpu_s"], 1),
    }


def wait_for(done: Any, *, what: str, deadline: float, act: Any = None) -> None:
    while not done():
        if act is not None:
            act()
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(POLL_S)


def run_phases(args: argparse.Namespace, meter: Meter) -> list[dict[str, Any]]:
    from synthesis.models import Batch, Character, Frame, Story
    from synthesis.services.characters import batch_launch_characters, character_apply_review
    from synthesis.services.hv3 import frame_apply_hv3
    from synthesis.services.stories import batch_launch_stories, story_apply_review
    from synthesis.states import CharacterStatus, FrameStatus, StoryStatus

    deadline = time.monotonic() + args.timeout
    results = []

    # Phase I: characters; HV1 locks every survivor once the renders are judged.
    start = meter.mark()
    chars = batch_launch_characters(count=args.characters, seed=args.seed)
    working = (CharacterStatus.DRAFTING, CharacterStatus.RENDERING)

    def hv1() -> None:
        for pk in chars.characters.filter(status=CharacterStatus.PENDING_HV1).values_list(
            "pk", flat=True
        ):
            character_apply_review(character_id=pk, approved=True, reason="benchmark HV1")

    wait_for(
        lambda: not chars.characters.filter(status__in=working).exists(),
        what="Phase I",
        deadline=deadline,
        act=hv1,
    )
    hv1()
    results.append(figures("I characters", start, meter.mark()))
    locked = Character.objects.filter(status=CharacterStatus.LOCKED).count()

    # Phase II: scripts; HV2 approves every valid script as it arrives (its frames start).
    # Phase III runs on the approved stories meanwhile, so II and III are measured together
    # from here, and III alone from the last HV2 approval.
    start = meter.mark()
    batch: Batch = batch_launch_stories(
        count=args.stories, seed=args.seed, params={"max_cast": min(5, locked)}
    )

    def hv2() -> None:
        for pk in batch.stories.filter(status=StoryStatus.PENDING_HV2).values_list("pk", flat=True):
            story_apply_review(story_id=pk, approved=True, reason="benchmark HV2")

    wait_for(
        lambda: not batch.stories.filter(status=StoryStatus.SCRIPTING).exists(),
        what="Phase II",
        deadline=deadline,
        act=hv2,
    )
    hv2()
    scripted = meter.mark()
    frames = Frame.objects.filter(story__batch=batch)
    hv3_decisions: Counter[str] = Counter()

    def hv3() -> None:
        for frame in frames.filter(status=FrameStatus.HARD_FAILED).only("pk", "round"):
            choice = "regenerate" if frame.round <= args.max_regenerations else "discard"
            frame_apply_hv3(frame_id=frame.pk, choice=choice, reason="benchmark HV3")
            hv3_decisions[choice] += 1

    active = (FrameStatus.REFERENCES, FrameStatus.RENDERING, FrameStatus.HARD_FAILED)
    wait_for(
        lambda: not frames.filter(status__in=active).exists(),
        what="Phase III",
        deadline=deadline,
        act=hv3,
    )
    end = meter.mark()
    results.append(figures("II+III stories", start, end))
    results.append(figures("III after last HV2", scripted, end))
    results.append(
        {
            "phase": "outcome",
            "characters": dict(Counter(Character.objects.values_list("status", flat=True))),
            "stories": dict(Counter(Story.objects.values_list("status", flat=True))),
            "frames": dict(Counter(frames.values_list("status", flat=True))),
            "hv3_decisions": dict(hv3_decisions),
        }
    )
    return results


def projection(results: list[dict[str, Any]], args: argparse.Namespace) -> dict[str, Any]:
    phase1, stories = results[0], results[1]
    frames = max(stories["frames_approved"], 1)
    per_story_frames = frames / args.stories
    hours1 = phase1["wall_s"] * PAPER_CHARACTERS / args.characters / 3600
    hours23 = stories["wall_s"] * PAPER_STORIES / args.stories / 3600
    return {
        "phase": "projection",
        "paper_characters": PAPER_CHARACTERS,
        "paper_stories": PAPER_STORIES,
        "approved_frames_per_story": round(per_story_frames, 2),
        "projected_frames": round(per_story_frames * PAPER_STORIES),
        "projected_hours_phase_I": round(hours1, 2),
        "projected_hours_phase_II_III": round(hours23, 2),
        "projected_hours_total": round(hours1 + hours23, 2),
        "overall_frames_per_s": round(frames / (phase1["wall_s"] + stories["wall_s"]), 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--characters", type=int, default=20)
    parser.add_argument("--stories", type=int, default=30)
    parser.add_argument("--paper", action="store_true", help="2,000 characters, 10,000 stories")
    parser.add_argument("--concurrency", type=int, default=4, help="default worker processes")
    parser.add_argument("--size", type=int, default=128, help="image side in pixels")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--max-regenerations", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=3600, help="hard stop, seconds")
    parser.add_argument("--database-url", default="postgres://postgres@127.0.0.1:5432/hbench_paper")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/8")
    args = parser.parse_args()
    if args.paper:
        args.characters, args.stories = PAPER_CHARACTERS, PAPER_STORIES
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)
    with tempfile.TemporaryDirectory(prefix="hilapp-paper-") as var_dir:
        results = run(args, var_dir)
    for block in results:
        print(f"--- {block.pop('phase')}")
        width = max(len(k) for k in block)
        for key, value in block.items():
            print(f"{key:<{width}}  {value}")
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


def wait_until_idle(pid: int, concurrency: int, timeout: float = 120) -> None:
    """Until the worker has forked its pool and stopped spending CPU on start-up."""
    deadline = time.monotonic() + timeout
    last = -1.0
    while time.monotonic() < deadline:
        time.sleep(1.0)
        cpu = tree_cpu_seconds(pid)
        if len(tree_pids(pid)) > concurrency and cpu - last < 0.05:
            return
        last = cpu
    raise SystemExit("the worker did not start within 120 s")


def run(args: argparse.Namespace, var_dir: str) -> list[dict[str, Any]]:
    import subprocess

    import redis

    site_dir = Path(var_dir) / "site"
    site_dir.mkdir()
    (site_dir / "sitecustomize.py").write_text(SITECUSTOMIZE)
    recreate_database(args.database_url)
    flush_redis(args.redis_url)
    env = worker_env(args, var_dir, str(site_dir))
    subprocess.run(
        [sys.executable, "-m", "django", "migrate", "--noinput", "-v", "0"],
        cwd=ROOT,
        env=env,
        check=True,
    )
    procs = Processes(Path(var_dir))
    try:
        worker = procs.start(
            "worker-default", [sys.executable, "-m", "hilapp.processes", "worker-default"], env
        )
        wait_until_idle(worker.pid, args.concurrency)
        os.environ.update({k: v for k, v in env.items() if k != "PYTHONPATH"})
        import django

        django.setup()
        from django.db import connection

        driver = DriverQueries()
        connection.execute_wrappers.append(driver)
        meter = Meter(worker.pid, redis.Redis.from_url(args.redis_url), driver)
        results = run_phases(args, meter)
        results.append(projection(results, args))
        return results
    except BaseException:
        print(procs.log_tail("worker-default"), file=sys.stderr)
        raise
    finally:
        procs.stop()


if __name__ == "__main__":
    main()
