"""gunicorn's settings for the ``web`` process (``python -m hilapp.processes web``), from the
environment. A bad value stops gunicorn with a message naming the variable.

- ``HILAPP_WEB_BIND`` (``127.0.0.1:8000``): where to listen. Loopback by default, so nothing is
  exposed by accident; a container or a host behind a proxy on another machine says
  ``0.0.0.0:8000`` explicitly.
- ``GUNICORN_WORKERS`` (2 per core + 1, at most 9) processes × ``GUNICORN_THREADS`` (4) threads
  each. Requests are short (pages, API rows, signed media checks), so threads absorb slow clients;
  every thread may hold a database connection, so workers × threads × web hosts must stay under
  PostgreSQL's ``max_connections`` with the workers' share.
- ``GUNICORN_TIMEOUT`` (60 s): a request running longer is killed and its worker restarted.
- ``GUNICORN_ACCESS_LOG`` (unset: off): ``-`` logs each request to stdout, or a file path.
- ``GUNICORN_FORWARDED_ALLOW_IPS`` (``127.0.0.1``): proxies whose X-Forwarded-* are believed.
"""

from __future__ import annotations

import os

from django.core.exceptions import ImproperlyConfigured

from hilapp.settings.env import env_int, env_str


def _read() -> dict[str, object]:
    cores = os.cpu_count() or 1
    bind_to = env_str("HILAPP_WEB_BIND") or "127.0.0.1:8000"
    host, _, port = bind_to.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ImproperlyConfigured(f"HILAPP_WEB_BIND={bind_to!r}: expected HOST:PORT")
    return {
        "bind": [bind_to],
        "workers": env_int("GUNICORN_WORKERS", min(2 * cores + 1, 9), minimum=1),
        "threads": env_int("GUNICORN_THREADS", 4, minimum=1),
        "timeout": env_int("GUNICORN_TIMEOUT", 60, minimum=1),
        "accesslog": env_str("GUNICORN_ACCESS_LOG") or None,
        "forwarded_allow_ips": env_str("GUNICORN_FORWARDED_ALLOW_IPS") or "127.0.0.1",
    }


try:
    _settings = _read()
except ImproperlyConfigured as exc:
    # gunicorn prints a traceback for an exception in its config; SystemExit says only this.
    raise SystemExit(f"gunicorn configuration: {exc}") from None

bind = _settings["bind"]
workers = _settings["workers"]
threads = _settings["threads"]
worker_class = "gthread"
timeout = _settings["timeout"]
graceful_timeout = 30  # a deploy's SIGTERM lets requests in flight finish
keepalive = 5  # seconds an idle keep-alive connection (from the proxy) stays open
accesslog = _settings["accesslog"]
errorlog = "-"
forwarded_allow_ips = _settings["forwarded_allow_ips"]
# Heartbeat files in memory, not on a container's overlay disk (gunicorn's advice for Docker).
worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") else None
