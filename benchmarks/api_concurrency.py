"""How many model calls an API host's api workers keep in flight (PostgreSQL, Redis, fakes).

Starts, each in its own process: the wire-format fakes of OpenAI and Gemini
(``tests.model_fakes``) answering after ``--latency-ms``; the api workers of one API host
exactly as the docs start them: one per core (``--processes``, default the host's cores), each
``python -m hilapp.processes worker-api`` with its own ``HILAPP_NODE_NAME``, its share of
``--concurrency`` as ``HILAPP_API_CONCURRENCY``,
``DB_POOL_MAX_SIZE`` and ``PGAPPNAME=hilapp-api`` so its connections show in
``pg_stat_activity``); a default worker (concurrency 1) for bookkeeping. It creates and migrates
its own database, launches enough characters (planner and judge on OpenAI + Gemini, the
renderer on Gemini + OpenAI images: four API calls per character) to keep every thread busy,
then samples every 0.25 s: requests in flight at the fakes, the api worker's CPU time
(``/proc/<pid>/stat``) and its PostgreSQL connections. It stops after ``--duration`` seconds of
steady state (or when the work runs out, or after ``--timeout``) and prints:

- average and peak calls in flight over the steady window, against the configured concurrency;
- calls/s answered by the fakes in that window, and the ideal (concurrency / latency);
- api worker CPU ms per call (user + system, whole run / calls answered);
- peak PostgreSQL connections of the api worker;
- where the host's CPU went (cores busy, from ``/proc/stat``): the api workers, the fakes (remote
  providers in production), the default worker, and the rest (PostgreSQL, Redis, this script).

    .venv/bin/python benchmarks/api_concurrency.py --latency-ms 2000
    .venv/bin/python benchmarks/api_concurrency.py --latency-ms 10000 --duration 60
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

ROLES = {
    "planner": "openai:gpt-4o=1,gemini:gemini-2.5-pro=1",
    "judge": "openai:gpt-4o=1,gemini:gemini-2.5-pro=1",
    "character_renderer": "gemini:gemini-2.5-flash-image=1,openai:gpt-image-1=1",
}
CALLS_PER_CHARACTER = 4  # draft, render, judge SC + PQ (the fakes always pass)
SAMPLE_S = 0.25
APP_NAME = "hilapp-api"
CLK_TCK = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def recreate_database(url: str) -> None:
    """Drop and create the database named in ``url`` (through the server's ``postgres`` db)."""
    import psycopg

    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    admin = urlunsplit(parts._replace(path="/postgres"))
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')


def flush_redis(url: str) -> None:
    import redis

    redis.Redis.from_url(url).flushdb()


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process and its waited-for children (``/proc/<pid>/stat``)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return math.nan
    # after the ")": state is field 3; utime, stime, cutime, cstime are fields 14..17
    return sum(int(v) for v in fields[11:15]) / CLK_TCK


def tree_pids(pid: int) -> list[int]:
    """``pid`` and its descendants (a prefork worker's children do the work)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        current = todo.pop()
        out.append(current)
        todo.extend(children.get(current, []))
    return out


def tree_cpu_seconds(pid: int) -> float:
    return sum(v for p in tree_pids(pid) if not math.isnan(v := cpu_seconds(p)))


def host_busy_seconds() -> float:
    """CPU seconds the whole host has spent busy, over all cores (``/proc/stat``)."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in fields[:8])
    return (user + nice + system + irq + softirq + steal) / CLK_TCK


def fake_stats(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(f"{url}/_stats", timeout=5) as response:
        return dict(json.loads(response.read()))


def wait_for_fakes(url: str, proc: subprocess.Popen[bytes], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit("the model fakes exited at start")
        try:
            fake_stats(url)
            return
        except OSError:
            time.sleep(0.1)
    raise SystemExit("the model fakes did not answer within 30 s")


class Processes:
    """Child processes in their own sessions, stopped together (TERM, then KILL)."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str, argv: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        log = open(self.log_dir / f"{name}.log", "wb")  # noqa: SIM115 - lives with the process
        proc = subprocess.Popen(
            argv, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        self.procs[name] = proc
        return proc

    def stop(self, timeout: float = 15) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for proc in self.procs.values():
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()

    def log_tail(self, name: str, chars: int = 3000) -> str:
        return (self.log_dir / f"{name}.log").read_text(errors="replace")[-chars:]


def base_env(args: argparse.Namespace, var_dir: str, fakes_url: str) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("HILAPP_", "DB_", "OPENAI_", "GEMINI_", "CELERY_", "PG"))
    }
    env.update(
        DJANGO_SETTINGS_MODULE="hilapp.settings.base",
        DATABASE_URL=args.database_url,
        CELERY_BROKER_URL=args.redis_url,
        SECRET_KEY="benchmark-only",
        HILAPP_VAR_DIR=var_dir,
        OPENAI_API_KEY="sk-fake",
        OPENAI_BASE_URL=f"{fakes_url}/v1",
        GEMINI_API_KEY="fake",
        GEMINI_BASE_URL=fakes_url,
        HILAPP_RETRY_BASE_S="0.5",
        HILAPP_AUDIT_RATE="0",
        HILAPP_NODE_NAME="bench",
        PYTHONUNBUFFERED="1",
    )
    return env


def launch(env: dict[str, str], characters: int, seed: int) -> float:
    """Launch the characters from this process (the same settings as the workers); seconds."""
    os.environ.update(env)
    import django

    django.setup()
    from synthesis.services.characters import batch_launch_characters

    started = time.monotonic()
    batch_launch_characters(count=characters, seed=seed, params={"roles": dict(ROLES)})
    return time.monotonic() - started


def start_profiler(args: argparse.Namespace, pid: int) -> subprocess.Popen[bytes]:
    """py-spy over the steady window: only samples holding the GIL (where CPU time goes)."""
    argv = [args.py_spy, "record", "--pid", str(pid), "--gil", "--nonblocking"]
    argv += ["--rate", "20", "--duration", str(int(args.duration)), "--format", "raw"]
    return subprocess.Popen([*argv, "--output", args.profile_out], stdout=subprocess.DEVNULL)


def profile_summary(path: str, top: int = 40) -> str:
    """Inclusive share of GIL-holding samples per function (collapsed stacks from py-spy)."""
    from collections import Counter

    total, inclusive = 0, Counter[str]()
    for line in Path(path).read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        total += int(count)
        seen = set()
        for frame in stack.split(";"):
            name = frame.split(":")[0] + ")" if " (" in frame else frame
            if name not in seen:
                seen.add(name)
                inclusive[name] += int(count)
    lines = [f"{total} samples holding the GIL"]
    lines += [f"{100 * n / total:5.1f}%  {name}" for name, n in inclusive.most_common(top)]
    return "\n".join(lines)


def pg_connections(conn: Any, database: str) -> int:
    row = conn.execute(
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s AND datname = %s",
        (APP_NAME, database),
    ).fetchone()
    return int(row[0])


def pending_characters(conn: Any) -> int:
    row = conn.execute(
        "SELECT count(*) FROM synthesis_character WHERE status IN ('drafting', 'rendering')"
    ).fetchone()
    return int(row[0])


def run(args: argparse.Namespace, var_dir: str) -> dict[str, Any]:
    import psycopg

    latency_s = args.latency_ms / 1000
    characters = args.characters or math.ceil(
        args.concurrency * (args.duration / (CALLS_PER_CHARACTER * latency_s) + 2)
    )
    database = urlsplit(args.database_url).path.lstrip("/")
    recreate_database(args.database_url)
    flush_redis(args.redis_url)
    port = free_port()
    fakes_url = f"http://127.0.0.1:{port}"
    env = base_env(args, var_dir, fakes_url)
    subprocess.run(
        [sys.executable, "-m", "django", "migrate", "--noinput", "-v", "0"],
        cwd=ROOT,
        env=env,
        check=True,
    )
    procs = Processes(Path(var_dir))
    python = sys.executable
    latency = str(args.latency_ms)
    try:
        fakes = procs.start(
            "fakes",
            [python, "-m", "tests.model_fakes", "--port", str(port), "--latency-ms", latency],
            env,
        )
        wait_for_fakes(fakes_url, fakes)
        # --processes N: N api workers of concurrency/N threads and db-pool/N connections
        # each (one per core), as docs/deploy.md sizes a host.
        apis = [
            procs.start(
                "worker-api" if n == 0 else f"worker-api-{n}",
                [python, "-m", "hilapp.processes", "worker-api"],
                {
                    **env,
                    "HILAPP_API_CONCURRENCY": str(args.concurrency // args.processes),
                    "DB_POOL_MAX_SIZE": str(max(1, args.db_pool // args.processes)),
                    "HILAPP_NODE_NAME": f"bench{n}",
                    "PGAPPNAME": APP_NAME,
                },
            )
            for n in range(args.processes)
        ]
        procs.start(
            "worker-default",
            [python, "-m", "hilapp.processes", "worker-default"],
            {**env, "HILAPP_DEFAULT_CONCURRENCY": "1", "PGAPPNAME": "hilapp-default"},
        )
        launch_s = launch(env, characters, args.seed)
        return sample(args, procs, apis, fakes_url, database, characters, launch_s, psycopg)
    finally:
        procs.stop()
        if args.show_logs:
            for name in procs.procs:
                print(f"--- {name}\n{procs.log_tail(name)}")


def sample(
    args: argparse.Namespace,
    procs: Processes,
    apis: list[subprocess.Popen[bytes]],
    fakes_url: str,
    database: str,
    characters: int,
    launch_s: float,
    psycopg: Any,
) -> dict[str, Any]:
    latency_s = args.latency_ms / 1000
    started = time.monotonic()
    api = apis[0]

    def api_cpu_seconds() -> float:
        return sum(tree_cpu_seconds(proc.pid) for proc in apis)

    # Where the host's CPU goes: the fakes stand in for remote providers, so their share
    # would be free in production; PostgreSQL, Redis and the benchmark are the rest.
    def others_cpu_seconds() -> dict[str, float]:
        return {
            name: tree_cpu_seconds(procs.procs[name].pid) for name in ("fakes", "worker-default")
        }

    cpu_start, host_start, others_start = (
        api_cpu_seconds(),
        host_busy_seconds(),
        others_cpu_seconds(),
    )
    wall_start = time.monotonic()
    answered_start = sum(fake_stats(fakes_url)["answered"].values())
    window_start: float | None = None
    profiler: subprocess.Popen[bytes] | None = None
    window: list[tuple[float, int, int]] = []  # (t, in_flight, answered)
    pg_peak = 0
    ended = "duration"
    with psycopg.connect(args.database_url, autocommit=True) as conn:
        while True:
            now = time.monotonic()
            stats = fake_stats(fakes_url)
            in_flight, answered = stats["in_flight"], sum(stats["answered"].values())
            pg_peak = max(pg_peak, pg_connections(conn, database))
            if window_start is None and in_flight > 0:
                window_start = now + args.ramp_latencies * latency_s  # after the ramp
            if window_start is not None and now >= window_start:
                if args.py_spy and profiler is None:
                    profiler = start_profiler(args, api.pid)
                window.append((now, in_flight, answered))
                if now - window_start >= args.duration:
                    break
                if len(window) % 8 == 0 and pending_characters(conn) == 0:
                    ended = "work done"
                    break
            if any(proc.poll() is not None for proc in apis):
                raise SystemExit(f"the api worker exited:\n{procs.log_tail('worker-api')}")
            if now - started > args.timeout:
                ended = "timeout"
                break
            time.sleep(max(0.0, SAMPLE_S - (time.monotonic() - now)))
        cpu_s = api_cpu_seconds() - cpu_start
        wall_s = time.monotonic() - wall_start
        host_s = host_busy_seconds() - host_start
        others_s = {k: v - others_start[k] for k, v in others_cpu_seconds().items()}
        if profiler is not None:
            profiler.wait(timeout=args.duration + 60)
        final = fake_stats(fakes_url)
        statuses = dict(
            conn.execute("SELECT status, count(*) FROM synthesis_character GROUP BY 1").fetchall()
        )
        calls = dict(
            conn.execute("SELECT status, count(*) FROM synthesis_modelcall GROUP BY 1").fetchall()
        )
    answered_total = sum(final["answered"].values()) - answered_start
    if len(window) < 2:
        raise SystemExit(f"no steady window ({ended}); worker log:\n{procs.log_tail('worker-api')}")
    span = window[-1][0] - window[0][0]
    flights = [w[1] for w in window]
    average = statistics.fmean(flights)
    return {
        "latency_ms": args.latency_ms,
        "configured_concurrency": args.concurrency,
        "api_worker_processes": args.processes,
        "db_pool_max_size": args.db_pool,
        "characters_launched": characters,
        "launch_s": round(launch_s, 1),
        "steady_window_s": round(span, 1),
        "window_ended_by": ended,
        "in_flight_avg": round(average, 1),
        "in_flight_avg_pct_of_concurrency": round(100 * average / args.concurrency, 1),
        "in_flight_peak_window": max(flights),
        "in_flight_peak_fakes": final["peak_in_flight"],
        "calls_per_s": round((window[-1][2] - window[0][2]) / span, 2),
        "ideal_calls_per_s": round(args.concurrency / latency_s, 2),
        "api_worker_cpu_ms_per_call": round(1000 * cpu_s / max(answered_total, 1), 1),
        "api_worker_cpu_s": round(cpu_s, 1),
        "calls_answered": answered_total,
        "answered_by_provider": final["answered"],
        "pg_connections_api_worker_peak": pg_peak,
        "host_cores_busy": round(host_s / wall_s, 2),
        "cores_api_workers": round(cpu_s / wall_s, 2),
        "cores_fakes": round(others_s["fakes"] / wall_s, 2),
        "cores_default_worker": round(others_s["worker-default"] / wall_s, 2),
        "cores_rest": round((host_s - cpu_s - sum(others_s.values())) / wall_s, 2),
        "characters_by_status": statuses,
        "ledger_by_status": calls,
        "load_average": " ".join(f"{x:.2f}" for x in os.getloadavg()),
        "cpus": os.cpu_count(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--latency-ms", type=float, default=2000)
    parser.add_argument("--concurrency", type=int, default=200, help="calls in flight in all")
    parser.add_argument(
        "--processes",
        type=int,
        default=os.cpu_count() or 1,
        help="api worker processes sharing --concurrency (default: one per core, as "
        "docs/deploy.md sizes an API host)",
    )
    parser.add_argument("--db-pool", type=int, default=16, help="DB_POOL_MAX_SIZE (api worker)")
    parser.add_argument("--duration", type=float, default=60, help="steady window, seconds")
    parser.add_argument(
        "--ramp-latencies", type=float, default=2, help="ramp before the window, in latencies"
    )
    parser.add_argument("--characters", type=int, default=0, help="0: enough for the window")
    parser.add_argument("--timeout", type=float, default=420, help="hard stop, seconds")
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--database-url", default="postgres://postgres@127.0.0.1:5432/hbench_api")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/8")
    parser.add_argument("--show-logs", action="store_true")
    parser.add_argument("--py-spy", default="", help="path to py-spy: profile the api worker")
    parser.add_argument("--profile-out", default="/tmp/api_concurrency.pyspy.txt")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="hilapp-apibench-") as var_dir:
        figures = run(args, var_dir)
    width = max(len(k) for k in figures)
    for key, value in figures.items():
        print(f"{key:<{width}}  {value}")
    if args.py_spy and Path(args.profile_out).exists():
        print(profile_summary(args.profile_out))


if __name__ == "__main__":
    main()
