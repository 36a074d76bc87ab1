"""The one definition of each production process's command line.

The compose file (``deploy/docker-compose.yml``), the docs and the topology test all start a
process as ``python -m hilapp.processes NAME``; nothing else spells out a command line. Each
process reads its settings from the environment (``hilapp/settings/base.py``) and needs nothing
from the working directory it is started in: every artifact is in storage, every state in the
database.

    python -m hilapp.processes --print NAME   # show the command line without running it
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping

# Queues (synthesis.providers.queues names them): the default queue runs the simulator, the
# reconciler and bookkeeping; ``api`` waits on the network; ``gpu`` holds local pipelines.
PROCESS_NAMES = ("release", "web", "worker-default", "worker-api", "worker-gpu", "beat")


def _env_int(env: Mapping[str, str], name: str, default: int) -> str:
    value = env.get(name) or str(default)
    if not value.isdigit() or int(value) < 1:
        raise SystemExit(f"{name}={value!r}: expected a positive whole number")
    return value


def _celery(*args: str) -> list[str]:
    return [sys.executable, "-m", "celery", "-A", "hilapp", *args]


def _django(*args: str) -> list[str]:
    return [sys.executable, "-m", "django", *args]


def commands(name: str, env: Mapping[str, str] | None = None) -> list[list[str]]:
    """The command lines (run in order) of process ``name``, for the given environment."""
    env = os.environ if env is None else env
    host = env.get("HILAPP_NODE_NAME") or "%h"
    if name == "release":
        # Run once per deploy, before new workers start: schema first, then static files.
        return [_django("migrate", "--noinput"), _django("collectstatic", "--noinput")]
    if name == "web":
        return [
            [
                sys.executable,
                "-m",
                "gunicorn",
                "hilapp.wsgi:application",
                "--config",
                "python:hilapp.gunicorn_conf",
            ]
        ]
    if name == "worker-default":
        concurrency = _env_int(env, "HILAPP_DEFAULT_CONCURRENCY", 4)
        return [
            _celery("worker", "-Q", "celery", "--concurrency", concurrency, "-n", f"default@{host}")
        ]
    if name == "worker-api":
        concurrency = _env_int(env, "HILAPP_API_CONCURRENCY", 200)
        return [
            _celery(
                "worker",
                "-Q",
                "api",
                "--pool",
                "threads",
                "--concurrency",
                concurrency,
                "-n",
                f"api@{host}",
            )
        ]
    if name == "worker-gpu":
        # One per device: start it with CUDA_VISIBLE_DEVICES naming that device.
        device = env.get("CUDA_VISIBLE_DEVICES") or "0"
        concurrency = _env_int(env, "HILAPP_GPU_CONCURRENCY", 8)
        return [
            _celery(
                "worker",
                "-Q",
                "gpu",
                "--pool",
                "threads",
                "--concurrency",
                concurrency,
                "-n",
                f"gpu{device.replace(',', '-')}@{host}",
            )
        ]
    if name == "beat":
        from django.conf import settings

        return [_celery("beat", "--schedule", str(settings.VAR_DIR / "celerybeat-schedule"))]
    raise SystemExit(f"unknown process {name!r}; one of {', '.join(PROCESS_NAMES)}")


def main(argv: list[str]) -> int:
    show = argv[:1] == ["--print"]
    names = argv[1:] if show else argv
    if len(names) != 1:
        print(f"usage: python -m hilapp.processes [--print] {{{','.join(PROCESS_NAMES)}}}")
        return 2
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hilapp.settings.base")
    import django

    django.setup()
    lines = commands(names[0])
    if show:
        for line in lines:
            print(" ".join(line))
        return 0
    for line in lines[:-1]:
        subprocess.run(line, check=True)
    os.execv(lines[-1][0], lines[-1])  # the last command becomes the process (signals reach it)
    return 0  # pragma: no cover


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
