"""The production web tier for tests: ``release`` then ``web`` (hilapp/processes.py), DEBUG off.

Not Django's live server: that one serves MEDIA_ROOT publicly (a test convenience), which would
hide exactly what these tests check.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings

from tests.conftest import _database_url
from tests.s3 import free_port

ROOT = Path(__file__).resolve().parents[2]
StartWeb = Callable[..., str]
# The test run's own switches, never a production process's.
TEST_ONLY = ("HILAPP_TESTING", "DEBUG", "DJANGO_SETTINGS_MODULE", "DJANGO_ALLOW_ASYNC_UNSAFE")


def _wait_listening(port: int, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            assert proc.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, "gunicorn did not listen within 60 s"
            time.sleep(0.2)


@pytest.fixture
def start_web(transactional_db: Any, tmp_path: Path) -> Iterator[StartWeb]:
    """``start_web(**env)``: run ``release`` and ``web`` on the test database; the base URL."""
    procs: list[subprocess.Popen[bytes]] = []

    def start(**extra: str) -> str:
        port = free_port()
        env = {k: v for k, v in os.environ.items() if k not in TEST_ONLY}
        env.update(
            DJANGO_SETTINGS_MODULE="hilapp.settings.base",
            DEBUG="0",
            HILAPP_HTTPS="0",  # plain HTTP on loopback (check --deploy covers HTTPS settings)
            SECRET_KEY=settings.SECRET_KEY,  # this process signs what the server checks
            DATABASE_URL=_database_url(),
            CELERY_BROKER_URL=settings.CELERY_BROKER_URL,
            HILAPP_VAR_DIR=str(tmp_path / "var"),
            STATIC_ROOT=str(tmp_path / "static"),
            MEDIA_ROOT=str(settings.MEDIA_ROOT),
            ALLOWED_HOSTS="127.0.0.1,localhost",
            HILAPP_WEB_BIND=f"127.0.0.1:{port}",
            GUNICORN_WORKERS="2",
            GUNICORN_THREADS="2",
            **extra,
        )
        processes = [sys.executable, "-m", "hilapp.processes"]
        release = subprocess.run(
            [*processes, "release"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
        )
        assert release.returncode == 0, release.stderr[-3000:]
        log = tmp_path / f"web-{port}.log"
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                [*processes, "web"],
                cwd=ROOT,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        procs.append(proc)
        _wait_listening(port, proc, log)
        return f"http://127.0.0.1:{port}"

    try:
        yield start
    finally:
        for proc in procs:
            os.killpg(proc.pid, signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=40)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
