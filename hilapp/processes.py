"""The one definition of each production process's command line.

The compose file (``deploy/docker-compose.yml``), the docs and the tests all start a process as
``python -m hilapp.processes NAME``; nothing else spells out a command line. Each process reads
its settings from the environment (``hilapp/settings/base.py``) and needs nothing from the
working directory it is started in: every artifact is in storage, every state in the database.

    python -m hilapp.processes NAME           # run it (the last command replaces this process)
    python -m hilapp.processes --print NAME   # show what would run, without running it

Some processes set defaults of their own for variables the operator left unset (see
``environment_defaults``); ``--print`` shows them in front of the command they apply to.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from collections.abc import Mapping

# Queues (synthesis.providers.queues names them): the default queue runs the simulator, the
# reconciler and bookkeeping; ``api`` waits on the network; ``gpu`` holds local pipelines.
PROCESS_NAMES = ("release", "web", "worker-default", "worker-api", "worker-gpu", "beat")
USAGE = f"usage: python -m hilapp.processes [--print] {{{','.join(PROCESS_NAMES)}}}"

DEFAULT_CONCURRENCY = 4  # prefork processes: simulator steps use CPU
API_CONCURRENCY = 200  # threads: each waits seconds on a model API
GPU_CONCURRENCY = 8  # threads feeding the micro-batcher (at least DIFFUSERS_MAX_BATCH)
# PostgreSQL connections shared by the api worker's threads: a call hands its connection back
# while it waits on the network (synthesis.providers.calls), so a few serve hundreds of calls.
API_DB_POOL_MAX_SIZE = 8
# Seconds a worker keeps a database connection across tasks (DB_CONN_MAX_AGE) where it has no
# pool: each child process or thread holds one, as many as without reuse, but connects once.
WORKER_DB_CONN_MAX_AGE = 600


def _concurrency(env: Mapping[str, str], name: str, default: int) -> int:
    value = (env.get(name) or "").strip() or str(default)
    if not value.isdigit() or int(value) < 1:
        raise SystemExit(f"{name}={value!r}: expected a positive whole number")
    return int(value)


def _is_set(env: Mapping[str, str], name: str) -> bool:
    return bool((env.get(name) or "").strip())


def environment_defaults(name: str, env: Mapping[str, str]) -> dict[str, str]:
    """Variables process ``name`` sets for itself because ``env`` leaves them unset.

    worker-api: a connection pool (``DB_POOL_MAX_SIZE``, used on PostgreSQL only) so its
    threads share a few database connections, and SDK HTTP pools as large as the calls it
    keeps in flight (``PROVIDER_MAX_CONNECTIONS`` = its concurrency), else calls queue for an
    HTTP connection. A value the operator set is kept, unless it cannot work.
    worker-default, worker-gpu: database connections kept across tasks (``DB_CONN_MAX_AGE``).
    """
    if name in ("worker-default", "worker-gpu"):
        defaults = {"DB_CONN_MAX_AGE": str(WORKER_DB_CONN_MAX_AGE)}
    elif name == "worker-api":
        defaults = _api_worker_defaults(env)
    else:
        return {}
    return {key: value for key, value in defaults.items() if not _is_set(env, key)}


def _api_worker_defaults(env: Mapping[str, str]) -> dict[str, str]:
    concurrency = _concurrency(env, "HILAPP_API_CONCURRENCY", API_CONCURRENCY)
    if _is_set(env, "PROVIDER_MAX_CONNECTIONS"):
        given = env["PROVIDER_MAX_CONNECTIONS"].strip()
        if given.isdigit() and int(given) < concurrency:
            raise SystemExit(
                f"PROVIDER_MAX_CONNECTIONS={given} is below HILAPP_API_CONCURRENCY={concurrency}:"
                " calls would wait for an HTTP connection; raise it or leave it unset"
            )
    return {
        "DB_POOL_MAX_SIZE": str(API_DB_POOL_MAX_SIZE),
        "PROVIDER_MAX_CONNECTIONS": str(concurrency),
    }


LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def _log_level(env: Mapping[str, str]) -> str:
    """Celery's own default is WARNING, which would hide the app's INFO lines (task successes
    with the reconciler's counts, the gpu warm-up); LOG_LEVEL is the settings' level too."""
    level = (env.get("LOG_LEVEL") or "").strip().upper() or "INFO"
    if level not in LOG_LEVELS:
        raise SystemExit(f"LOG_LEVEL={level!r}: expected one of {', '.join(LOG_LEVELS)}")
    return level


def _celery(*args: str) -> list[str]:
    return [sys.executable, "-m", "celery", "-A", "hilapp", *args]


def _django(*args: str) -> list[str]:
    return [sys.executable, "-m", "django", *args]


def _worker(
    env: Mapping[str, str], queue: str, node: str, concurrency: int, *, threads: bool
) -> list[str]:
    pool = ["--pool", "threads"] if threads else []
    return _celery(
        "worker",
        "-Q",
        queue,
        *pool,
        "--concurrency",
        str(concurrency),
        "-n",
        node,
        "--loglevel",
        _log_level(env),
    )


def commands(name: str, env: Mapping[str, str] | None = None) -> list[list[str]]:
    """The command lines (run in order) of process ``name``, for the given environment."""
    env = os.environ if env is None else env
    host = (env.get("HILAPP_NODE_NAME") or "").strip() or "%h"  # Celery expands %h
    if name == "release":
        # Run once per deploy, before new workers start: schema first, then static files.
        return [_django("migrate", "--noinput"), _django("collectstatic", "--noinput")]
    if name == "web":
        gunicorn = [sys.executable, "-m", "gunicorn", "hilapp.wsgi:application"]
        return [[*gunicorn, "--config", "python:hilapp.gunicorn_conf"]]
    if name == "worker-default":
        concurrency = _concurrency(env, "HILAPP_DEFAULT_CONCURRENCY", DEFAULT_CONCURRENCY)
        return [_worker(env, "celery", f"default@{host}", concurrency, threads=False)]
    if name == "worker-api":
        concurrency = _concurrency(env, "HILAPP_API_CONCURRENCY", API_CONCURRENCY)
        return [_worker(env, "api", f"api@{host}", concurrency, threads=True)]
    if name == "worker-gpu":
        # One per device. The node is named after the device: HILAPP_GPU_DEVICE when set (a
        # container that sees only its reserved GPU calls it 0), else CUDA_VISIBLE_DEVICES.
        device = (
            (env.get("HILAPP_GPU_DEVICE") or "").strip()
            or (env.get("CUDA_VISIBLE_DEVICES") or "").strip()
            or "0"
        )
        concurrency = _concurrency(env, "HILAPP_GPU_CONCURRENCY", GPU_CONCURRENCY)
        node = f"gpu{device.replace(',', '-')}@{host}"
        return [_worker(env, "gpu", node, concurrency, threads=True)]
    if name == "beat":
        from django.conf import settings

        schedule = str(settings.CELERY_BEAT_SCHEDULE_FILENAME)
        return [_celery("beat", "--schedule", schedule, "--loglevel", _log_level(env))]
    raise SystemExit(f"unknown process {name!r}\n{USAGE}")


def describe(name: str, env: Mapping[str, str]) -> list[str]:
    """What ``--print`` shows: each command as a shell line, the defaults in front of it."""
    assignments = [f"{key}={value}" for key, value in environment_defaults(name, env).items()]
    return [shlex.join([*assignments, *line]) for line in commands(name, env)]


def main(argv: list[str]) -> int:
    show = argv[:1] == ["--print"]
    names = argv[1:] if show else argv
    if len(names) != 1 or names[0] not in PROCESS_NAMES:
        if len(names) == 1:
            print(f"unknown process {names[0]!r}", file=sys.stderr)
        print(USAGE, file=sys.stderr)
        return 2
    name = names[0]
    if show:
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hilapp.settings.base")
        import django

        django.setup()
        for shown in describe(name, os.environ):
            print(shown)
        return 0
    # The defaults go into this process's environment before Django reads its settings, and
    # are inherited by the commands below (exec keeps the environment).
    os.environ.update(environment_defaults(name, os.environ))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hilapp.settings.base")
    import django

    django.setup()  # a bad setting stops here, with its message, before anything starts
    lines = commands(name)
    for line in lines[:-1]:
        finished = subprocess.run(line)
        if finished.returncode:  # e.g. a failed migration: nothing after it runs
            return finished.returncode
    os.execv(lines[-1][0], lines[-1])  # the last command becomes the process (signals reach it)
    return 0  # pragma: no cover


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
