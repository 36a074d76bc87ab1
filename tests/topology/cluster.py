"""Processes of one deployment on this machine, each as if on its own host.

Each process is started as the docs say (``python -m hilapp.processes NAME``) in its own working
directory with its own ``HILAPP_VAR_DIR``, with the documented production environment
(``deploy/production.env.example``): they share nothing but PostgreSQL, Redis and an S3 bucket.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from django.conf import settings

from tests.conftest import _database_url, stop_process_groups
from tests.model_fakes import ModelFakes

ROOT = Path(__file__).resolve().parents[2]
# Planner, judge and renderer on the API providers: a character's four calls all go to the api
# queue (draft, render, VIEScore SC and PQ).
API_ROLES = {
    "planner": "openai:gpt-4o=1,gemini:gemini-2.5-pro=1",
    "judge": "openai:gpt-4o=1,gemini:gemini-2.5-pro=1",
    "character_renderer": "gemini:gemini-2.5-flash-image=1,openai:gpt-image-1=1",
}
# The test process's own settings, which a deployed process must not inherit.
TEST_ONLY = ("HILAPP_TESTING", "DJANGO_SETTINGS_MODULE", "DJANGO_ALLOW_ASYNC_UNSAFE", "DEBUG")


def deployment_environment(bucket: dict[str, Any], fakes: ModelFakes) -> dict[str, str]:
    """The documented environment on this machine's servers, with the S3 ``bucket`` (moto) and
    the model ``fakes``; leases, the reconciler and retries are shortened so that crashes are
    recovered within a test's time."""
    env = {k: v for k, v in os.environ.items() if k not in TEST_ONLY and not k.startswith("AWS_")}
    env.update(documented_environment())
    env.update({**bucket, **fakes.env()})
    env.pop("MEDIA_ROOT", None)
    env.update(
        AWS_S3_PUBLIC_ENDPOINT_URL=bucket["AWS_S3_ENDPOINT_URL"],
        DJANGO_SETTINGS_MODULE="hilapp.settings.base",
        SECRET_KEY=settings.SECRET_KEY,
        DATABASE_URL=_database_url(),
        CELERY_BROKER_URL="redis://127.0.0.1:6379/0",
        ALLOWED_HOSTS="127.0.0.1",
        HILAPP_DEFAULT_CONCURRENCY="2",
        HILAPP_TEMPLATE_SIZE="128",
        HILAPP_LEASE_S="20",
        HILAPP_RECONCILE_EVERY_S="3",
        HILAPP_RETRY_BASE_S="0.2",
        HILAPP_RETRY_MAX_S="2",
    )
    return env


def documented_environment() -> dict[str, str]:
    """``deploy/production.env.example`` as a process would read it."""
    env = {}
    for line in (ROOT / "deploy" / "production.env.example").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, _, value = line.partition("=")
            env[key.strip()] = value.strip()
    return env


class Cluster:
    """The processes of one deployment; each in its own directory, sharing only the servers."""

    def __init__(self, base: Path, env: dict[str, str]) -> None:
        self.base = base
        self.env = env
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.starts: dict[str, int] = {}

    def _home(self, name: str) -> tuple[Path, dict[str, str]]:
        home = self.base / name
        (home / "var").mkdir(parents=True, exist_ok=True)
        return home, {**self.env, "HILAPP_VAR_DIR": str(home / "var")}

    def _once(self, argv: list[str], *, host: str, timeout: float) -> None:
        home, env = self._home(host)
        done = subprocess.run(
            argv, cwd=home, env=env, capture_output=True, text=True, timeout=timeout
        )
        assert done.returncode == 0, done.stderr[-3000:]

    def run(self, name: str, *, host: str) -> None:
        """Run a one-shot process on ``host`` (release: migrate, and static files for its web)."""
        self._once([sys.executable, "-m", "hilapp.processes", name], host=host, timeout=300)

    def manage(self, *argv: str, host: str) -> None:
        """``manage.py`` with ``argv`` on ``host``, as an operator runs a command there."""
        self._once([sys.executable, str(ROOT / "manage.py"), *argv], host=host, timeout=120)

    def launch_api_characters(self, count: int, *, seed: int) -> None:
        """Launch ``count`` characters whose every call goes to OpenAI or Gemini (the api queue),
        as an operator does from the web host."""
        params = json.dumps({"roles": API_ROLES})
        self.manage(
            "launch_batch",
            "characters",
            "--count",
            str(count),
            "--seed",
            str(seed),
            "--params",
            params,
            host="web",
        )

    def start(self, name: str, *, as_: str = "", env: dict[str, str] | None = None) -> None:
        """Start process ``name``; ``as_`` names a second one of the same kind (its own
        directory, log and handle), ``env`` adds to its environment."""
        label = as_ or name
        home, base_env = self._home(label)
        self.starts[label] = self.starts.get(label, 0) + 1
        log = open(home / f"{label}-{self.starts[label]}.log", "wb")  # noqa: SIM115
        self.procs[label] = subprocess.Popen(
            [sys.executable, "-m", "hilapp.processes", name],
            cwd=home,
            env={**base_env, **(env or {})},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def kill(self, name: str) -> None:
        """SIGKILL the process and its children (a crash, not a shutdown)."""
        proc = self.procs[name]
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)

    def alive(self) -> dict[str, bool]:
        return {name: proc.poll() is None for name, proc in self.procs.items()}

    def stop(self) -> None:
        stop_process_groups(self.procs.values(), timeout=30)

    def log_of(self, name: str) -> str:
        """Everything process ``name`` has logged, over all its starts."""
        return "\n".join(
            path.read_text(errors="replace") for path in sorted(self.base.glob(f"{name}/*.log"))
        )

    def logs(self) -> str:
        return "\n".join(
            f"--- {path.name}\n{path.read_text(errors='replace')[-2500:]}"
            for path in sorted(self.base.glob("*/*.log"))
        )
