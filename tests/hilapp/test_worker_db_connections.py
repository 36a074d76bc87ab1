"""The default worker, started as the docs start it, keeps its database connection across tasks,
and connects afresh after the database dropped it.

Celery's Django fix-up would close every connection before and after each task; a new
PostgreSQL connection per task cost more worker CPU than the task's own queries
(``benchmarks/paper_scale.py``). The connections are watched in ``pg_stat_activity`` under the
worker's own application name.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from django.db import connection

from hilapp.celery import app
from tests.conftest import ROOT, Workers, wait_until

APP_NAME = "hilapp-conn-test"
RECONCILE = "synthesis.tasks.reconcile"

pytestmark = [pytest.mark.postgres, pytest.mark.worker]


def _backends() -> list[tuple[int, Any]]:
    """(pid, backend_start) of the worker's connections."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pid, backend_start FROM pg_stat_activity WHERE application_name = %s",
            [APP_NAME],
        )
        return list(cursor.fetchall())


def _start_default_worker(workers: Workers, log_dir: Path) -> None:
    log = open(log_dir / "worker-default.log", "wb")  # noqa: SIM115 - lives with the process
    proc = subprocess.Popen(
        [sys.executable, "-m", "hilapp.processes", "worker-default"],
        cwd=ROOT,
        env={**workers.env, "HILAPP_DEFAULT_CONCURRENCY": "1", "PGAPPNAME": APP_NAME},
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    workers.procs.append(proc)  # stopped with the fixture's workers


def _send(count: int) -> None:
    for _ in range(count):
        app.send_task(RECONCILE, queue="celery")


def test_the_default_worker_reuses_its_connection_and_replaces_a_dropped_one(
    celery_workers: Workers, tmp_path: Path
) -> None:
    _start_default_worker(celery_workers, tmp_path)
    _send(1)
    try:
        # Without reuse the connection is closed as the task ends, so none is ever left open.
        wait_until(lambda: len(_backends()) == 1, timeout=60, message="the worker's connection")
    except AssertionError:
        print(celery_workers.logs())
        raise
    ((pid, started),) = _backends()

    _send(20)
    wait_until(lambda: _log_count(tmp_path, "succeeded") >= 21, timeout=60, message="21 tasks")
    assert _backends() == [(pid, started)], "one connection, the same, served all 21 tasks"

    # The database drops it (a restart, an idle timeout): a task fails on it, the worker closes
    # it, and the next tasks connect afresh.
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_terminate_backend(%s)", [pid])
    wait_until(lambda: not _backends(), timeout=10, message="the connection to be gone")
    for sent in range(1, 6):
        _send(1)
        try:
            wait_until(lambda: len(_backends()) == 1, timeout=5, message="a new connection")
            break
        except AssertionError:
            assert sent < 5, celery_workers.logs()
    ((new_pid, _),) = _backends()
    assert new_pid != pid
    wait_until(lambda: _log_count(tmp_path, "succeeded") >= 22, timeout=30, message="22 tasks")


def _log_count(log_dir: Path, word: str) -> int:
    text = (log_dir / "worker-default.log").read_text(errors="replace")
    return sum(1 for line in text.splitlines() if RECONCILE in line and word in line)
