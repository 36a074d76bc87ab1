"""Shared fixtures: demo users by role, real Celery worker processes, and the PostgreSQL marker.

Tests marked ``postgres`` need DATABASE_URL on PostgreSQL; on the embedded defaults they are
deselected (and the count is reported), never skipped-and-counted-as-passed. CI runs the suite
on both.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings

ROOT = Path(__file__).resolve().parent.parent


def _redis_answers() -> bool:
    import redis

    try:
        return bool(redis.Redis(host="127.0.0.1", port=6379, socket_connect_timeout=1).ping())
    except redis.RedisError:
        return False


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Deselect (and count, loudly) tests whose server is absent; they never count as passed."""
    missing = {}
    if not settings.IS_POSTGRES:
        missing["postgres"] = "DATABASE_URL is not PostgreSQL"
    if any(item.get_closest_marker("redis") for item in items) and not _redis_answers():
        missing["redis"] = "no Redis answers on 127.0.0.1:6379"
    for marker, why in missing.items():
        dropped = [item for item in items if item.get_closest_marker(marker)]
        if dropped:
            config.hook.pytest_deselected(items=dropped)
            items[:] = [item for item in items if not item.get_closest_marker(marker)]
            print(f"\n{len(dropped)} tests needing {marker} deselected: {why}")


@pytest.fixture
def make_user(db: Any) -> Callable[..., Any]:
    from django.contrib.auth import get_user_model

    from hilapp.roles import CONSUMERS, EXPERTS, add_to_role

    def make(username: str, role: str = "expert") -> Any:
        user = get_user_model().objects.create_user(username, password=f"{username}-pw")
        if role == "admin":
            user.is_staff = user.is_superuser = True
            user.save()
        elif role in ("expert", "consumer"):
            add_to_role(user, EXPERTS if role == "expert" else CONSUMERS)
        return user

    return make


def wait_until(
    predicate: Callable[[], bool],
    *,
    timeout: float,
    interval: float = 0.25,
    message: str = "condition",
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {message}")


EAGER_IMAGE_SIZE = 96


@contextlib.contextmanager
def tasks_run_eagerly() -> Iterator[None]:
    """Tasks run in this process as they are sent (use with
    ``django_capture_on_commit_callbacks(execute=True)`` where sends wait for a commit)."""
    from hilapp.celery import app

    app.conf.task_always_eager = True
    app.conf.task_eager_propagates = True
    try:
        yield
    finally:
        app.conf.task_always_eager = False


@pytest.fixture
def eager(settings: Any) -> Iterator[None]:
    """Eager tasks with small images, no retry pauses and no gate audit: the one fixture for
    tests that drive the pipeline through its services in this process."""
    settings.HILAPP_TEMPLATE_SIZE = settings.HILAPP_FRAME_SIZE = EAGER_IMAGE_SIZE
    settings.HILAPP_RETRY_BASE_S = 0
    settings.HILAPP_AUDIT_RATE = 0
    with tasks_run_eagerly():
        yield


def _database_url() -> str:
    from django.db import connection

    db = connection.settings_dict
    if db["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{db['NAME']}"
    user = db.get("USER") or "postgres"
    password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
    host = db.get("HOST") or "127.0.0.1"
    port = db.get("PORT") or 5432
    return f"postgres://{user}{password}@{host}:{port}/{db['NAME']}"


class Workers:
    """Real ``celery worker`` processes on the test database and the configured broker."""

    def __init__(self, env: dict[str, str], log_dir: Path) -> None:
        self.env = env
        self.log_dir = log_dir
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(
        self,
        *,
        concurrency: int = 2,
        queues: str = "celery,api,gpu",
        pool: str = "prefork",
        name: str = "test",
        env: dict[str, str] | None = None,
    ) -> subprocess.Popen[bytes]:
        n = len(self.procs)
        log = open(self.log_dir / f"worker-{n}.log", "wb")  # noqa: SIM115 - lives with the process
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "hilapp",
                "worker",
                "-Q",
                queues,
                "--concurrency",
                str(concurrency),
                "--pool",
                pool,
                "--loglevel",
                "INFO",
                "-n",
                f"{name}{n}@%h",
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
            ],
            cwd=ROOT,
            env={**self.env, **(env or {})},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.procs.append(proc)
        return proc

    def kill(self, proc: subprocess.Popen[bytes]) -> None:
        """SIGKILL the worker and its pool children: a crash, not a shutdown."""
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)

    def stop_all(self) -> None:
        stop_process_groups(self.procs, timeout=20)

    def logs(self, tail: int = 3000) -> str:
        """The last ``tail`` characters of each worker's log (0: all of it)."""
        return "\n".join(p.read_text(errors="replace")[-tail:] for p in self.log_dir.glob("*.log"))


def stop_process_groups(procs: Iterable[subprocess.Popen[bytes]], *, timeout: float) -> None:
    """SIGTERM each process group still running, then SIGKILL those not gone after ``timeout``."""
    procs = list(procs)
    for proc in procs:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _purge_broker() -> None:
    from hilapp.celery import app
    from synthesis.providers.queues import PIPELINE_QUEUES

    with app.connection_for_write() as conn:
        for queue in PIPELINE_QUEUES:
            with contextlib.suppress(Exception):
                conn.default_channel.queue_purge(queue)  # type: ignore[attr-defined]


@pytest.fixture
def celery_workers(transactional_db: Any, tmp_path: Path) -> Iterator[Workers]:
    """Start workers with ``workers.start()``; they see the test database and media."""
    _purge_broker()
    env = os.environ.copy()
    env.update(
        DJANGO_SETTINGS_MODULE="hilapp.settings.test",
        DATABASE_URL=_database_url(),
        CELERY_BROKER_URL=settings.CELERY_BROKER_URL,
        HILAPP_VAR_DIR=str(settings.VAR_DIR),
        MEDIA_ROOT=str(settings.MEDIA_ROOT),
        HILAPP_RETRY_BASE_S="0.05",
        HILAPP_RETRY_MAX_S="0.5",
    )
    workers = Workers(env, tmp_path)
    try:
        yield workers
    finally:
        workers.stop_all()
        _purge_broker()


CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture
def browser() -> Iterator[Any]:
    """Debian's Chromium driven by Playwright (never a downloaded browser)."""
    from django.db import connections
    from playwright import sync_api

    with sync_api.sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()
        # ORM calls made while Playwright's loop runs get their own connections (Django's
        # connections are per context); close them here, or PostgreSQL cannot drop the test
        # database at the end of the session.
        connections.close_all()


@pytest.fixture(scope="session")
def local_s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A moto S3 server process for the session; ``local_s3.bucket()`` makes a fresh bucket."""
    from tests.s3 import LocalS3

    server = LocalS3().start(log=tmp_path_factory.mktemp("s3") / "moto.log")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(autouse=True)
def _forget_lockouts_and_throttles() -> Iterator[None]:
    """Each test starts with no lockout or throttle counts left by another test."""
    yield
    from hilapp.lockouts import lockouts_clear_all

    with contextlib.suppress(Exception):  # a test without the cache configured
        lockouts_clear_all()
