"""hilapp/processes.py, the one definition of each production process's command line: what
``--print`` shows for each name, the defaults a process sets for itself, refused values, and a
real worker-api / worker-default started through it consuming only its own queue."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from celery import Celery
from django.conf import settings

from hilapp import processes

ROOT = Path(__file__).resolve().parents[2]
PY = sys.executable
CELERY = f"{PY} -m celery -A hilapp"


def printed(name: str, env: dict[str, str]) -> list[str]:
    return processes.describe(name, env)


def test_print_shows_each_process_command_line() -> None:
    env: dict[str, str] = {}
    assert printed("release", env) == [
        f"{PY} -m django migrate --noinput",
        f"{PY} -m django collectstatic --noinput",
    ]
    assert printed("web", env) == [
        f"{PY} -m gunicorn hilapp.wsgi:application --config python:hilapp.gunicorn_conf"
    ]
    assert printed("worker-default", env) == [
        f"DB_CONN_MAX_AGE=600 {CELERY} worker -Q celery --concurrency 4 -n default@%h "
        "--loglevel INFO"
    ]
    assert printed("worker-api", env) == [
        f"DB_POOL_MAX_SIZE=8 PROVIDER_MAX_CONNECTIONS=200 {CELERY} worker -Q api "
        "--pool threads --concurrency 200 -n api@%h --loglevel INFO"
    ]
    assert printed("worker-gpu", env) == [
        f"DB_CONN_MAX_AGE=600 {CELERY} worker -Q gpu --pool threads --concurrency 8 -n gpu0@%h "
        "--loglevel INFO"
    ]
    schedule = settings.CELERY_BEAT_SCHEDULE_FILENAME
    assert printed("beat", env) == [f"{CELERY} beat --schedule {schedule} --loglevel INFO"]
    assert set(processes.PROCESS_NAMES) == {
        "release",
        "web",
        "worker-default",
        "worker-api",
        "worker-gpu",
        "beat",
    }


def test_concurrency_and_node_name_come_from_the_environment() -> None:
    env = {
        "HILAPP_DEFAULT_CONCURRENCY": "6",
        "HILAPP_API_CONCURRENCY": " 300 ",
        "HILAPP_GPU_CONCURRENCY": "4",
        "HILAPP_NODE_NAME": "host7",
    }
    env["LOG_LEVEL"] = "warning"
    assert printed("worker-default", env)[0].endswith(
        "-Q celery --concurrency 6 -n default@host7 --loglevel WARNING"
    )
    assert printed("worker-api", env) == [
        f"DB_POOL_MAX_SIZE=8 PROVIDER_MAX_CONNECTIONS=300 {CELERY} worker -Q api "
        "--pool threads --concurrency 300 -n api@host7 --loglevel WARNING"
    ]
    gpu = printed("worker-gpu", env)[0]
    assert gpu.endswith("--concurrency 4 -n gpu0@host7 --loglevel WARNING")


def test_the_api_worker_listens_on_api_only_with_threads() -> None:
    (line,) = processes.commands("worker-api", {})
    assert line[line.index("-Q") + 1] == "api"
    assert line.count("-Q") == 1
    assert line[line.index("--pool") + 1] == "threads"
    (default,) = processes.commands("worker-default", {})
    assert default[default.index("-Q") + 1] == "celery" and "--pool" not in default  # prefork


@pytest.mark.parametrize(
    ("env", "node"),
    [
        ({"CUDA_VISIBLE_DEVICES": "1"}, "gpu1@%h"),
        ({"CUDA_VISIBLE_DEVICES": "2,3"}, "gpu2-3@%h"),
        ({"CUDA_VISIBLE_DEVICES": "0", "HILAPP_GPU_DEVICE": "5"}, "gpu5@%h"),
        ({}, "gpu0@%h"),
    ],
    ids=["device-1", "two-devices", "container-sees-0-host-device-5", "unset"],
)
def test_the_gpu_worker_is_named_after_its_device(env: dict[str, str], node: str) -> None:
    (line,) = processes.commands("worker-gpu", env)
    assert line[line.index("-n") + 1] == node
    assert line[line.index("-Q") + 1] == "gpu"


def test_the_api_worker_keeps_what_the_operator_set() -> None:
    env = {"DB_POOL_MAX_SIZE": "16", "PROVIDER_MAX_CONNECTIONS": "500"}
    assert processes.environment_defaults("worker-api", env) == {}
    assert processes.environment_defaults("worker-api", {"DB_POOL_MAX_SIZE": "4"}) == {
        "PROVIDER_MAX_CONNECTIONS": "200"
    }
    for name in ("release", "web", "beat"):
        assert processes.environment_defaults(name, {}) == {}


@pytest.mark.parametrize("name", ["worker-default", "worker-gpu"])
def test_workers_without_a_pool_keep_their_connections_across_tasks(name: str) -> None:
    # tests/hilapp/test_worker_db_connections.py shows the reuse on a running worker
    assert processes.environment_defaults(name, {}) == {"DB_CONN_MAX_AGE": "600"}
    assert processes.environment_defaults(name, {"DB_CONN_MAX_AGE": "0"}) == {}


@pytest.mark.parametrize(
    ("name", "env", "message"),
    [
        ("worker-api", {"HILAPP_API_CONCURRENCY": "0"}, "HILAPP_API_CONCURRENCY='0': expected"),
        ("worker-api", {"HILAPP_API_CONCURRENCY": "-5"}, "HILAPP_API_CONCURRENCY='-5': expected"),
        ("worker-default", {"HILAPP_DEFAULT_CONCURRENCY": "four"}, "'four': expected a positive"),
        ("worker-gpu", {"HILAPP_GPU_CONCURRENCY": "2.5"}, "HILAPP_GPU_CONCURRENCY='2.5'"),
        ("beat", {"LOG_LEVEL": "loud"}, "LOG_LEVEL='LOUD': expected one of DEBUG, INFO"),
        (
            "worker-api",
            {"HILAPP_API_CONCURRENCY": "300", "PROVIDER_MAX_CONNECTIONS": "100"},
            "PROVIDER_MAX_CONNECTIONS=100 is below HILAPP_API_CONCURRENCY=300",
        ),
    ],
)
def test_bad_values_are_refused_with_a_message(
    name: str, env: dict[str, str], message: str
) -> None:
    with pytest.raises(SystemExit) as refused:
        processes.describe(name, env)
    assert message in str(refused.value.code)


def run_cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PY, "-m", "hilapp.processes", *args],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_command_line_prints_and_refuses() -> None:
    shown = run_cli("--print", "worker-api", HILAPP_API_CONCURRENCY="50")
    assert shown.returncode == 0, shown.stderr
    assert "PROVIDER_MAX_CONNECTIONS=50 " in shown.stdout
    assert shown.stdout.rstrip().endswith(
        "-Q api --pool threads --concurrency 50 -n api@%h --loglevel INFO"
    )

    bad = run_cli("worker-api", HILAPP_API_CONCURRENCY="lots")
    assert bad.returncode == 1
    assert "HILAPP_API_CONCURRENCY='lots': expected a positive whole number" in bad.stderr

    for args in (["worker"], ["--print", "flower"], [], ["web", "beat"]):
        wrong = run_cli(*args)
        assert wrong.returncode == 2, args
        assert "usage: python -m hilapp.processes [--print] {release,web," in wrong.stderr
        assert wrong.stdout == ""
    assert "unknown process 'worker'" in run_cli("worker").stderr


@pytest.fixture
def started(tmp_path: Path) -> Iterator[list[subprocess.Popen[bytes]]]:
    procs: list[subprocess.Popen[bytes]] = []
    yield procs
    for proc in procs:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def redis_broker() -> str:
    """The test run's Redis broker (its own database number), else database 0."""
    url = str(settings.CELERY_BROKER_URL)
    return url if url.startswith("redis://") else "redis://127.0.0.1:6379/0"


@pytest.mark.redis
@pytest.mark.parametrize(
    ("name", "queue", "pool", "concurrency_var"),
    [
        ("worker-api", "api", "thread", "HILAPP_API_CONCURRENCY"),
        ("worker-default", "celery", "prefork", "HILAPP_DEFAULT_CONCURRENCY"),
    ],
)
def test_a_started_worker_consumes_only_its_queue(
    name: str,
    queue: str,
    pool: str,
    concurrency_var: str,
    tmp_path: Path,
    started: list[subprocess.Popen[bytes]],
) -> None:
    broker = redis_broker()
    host = f"hdeploy-{uuid.uuid4().hex[:8]}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DB_POOL", "PROVIDER_MAX"))}
    env.update(
        DJANGO_SETTINGS_MODULE="hilapp.settings.base",
        SECRET_KEY="x" * 50,
        CELERY_BROKER_URL=broker,
        HILAPP_VAR_DIR=str(tmp_path / "var"),
        HILAPP_NODE_NAME=host,
        **{concurrency_var: "3"},
    )
    env.pop("DATABASE_URL", None)  # SQLite in tmp: the worker only needs to start
    log = tmp_path / "worker.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [PY, "-m", "hilapp.processes", name],
            cwd=tmp_path,  # nothing from the working directory is needed
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    started.append(proc)
    node = f"{name.removeprefix('worker-')}@{host}"
    control = Celery(broker=broker).control
    deadline = time.monotonic() + 90
    while not control.ping(destination=[node], timeout=1):
        assert proc.poll() is None, log.read_text()[-3000:]
        assert time.monotonic() < deadline, log.read_text()[-3000:]
    inspect = control.inspect(destination=[node], timeout=5)
    queues = inspect.active_queues() or {}
    assert [q["name"] for q in queues[node]] == [queue]
    stats = (inspect.stats() or {})[node]["pool"]
    assert stats["max-concurrency"] == 3
    assert pool in stats["implementation"].lower()
    # The process started is the worker itself (exec), with the defaults in its environment.
    environ = dict(
        item.split("=", 1)
        for item in Path(f"/proc/{proc.pid}/environ").read_text().split("\0")
        if "=" in item
    )
    cmdline = Path(f"/proc/{proc.pid}/cmdline").read_text().split("\0")
    assert cmdline[1:6] == ["-m", "celery", "-A", "hilapp", "worker"]
    if name == "worker-api":
        assert (environ["DB_POOL_MAX_SIZE"], environ["PROVIDER_MAX_CONNECTIONS"]) == ("8", "3")
    else:
        assert "DB_POOL_MAX_SIZE" not in environ
