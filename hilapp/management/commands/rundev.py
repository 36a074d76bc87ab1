"""Run web, worker and scheduler together (the embedded mode's one command); Ctrl-C stops all.

The console stays quiet by default: the pages poll (batch progress, exports, the next review
card), so runserver's request log would scroll one line per poll per open tab, and the broker
client repeats the same warning on every connection. Quiet mode drops the request lines of those
polling endpoints, prints every other warning once, and runs the worker and beat at WARNING.
``--verbose`` shows everything.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from typing import IO, Any

from django.core.management.base import BaseCommand, CommandParser

# runserver's request lines of the endpoints that pages poll: "GET /api/v1/batches/3/ HTTP/1.1" 200
POLLING = re.compile(
    r'"GET /(api/v1/(batches|exports)/\d+/|review/[^/ ]+/next-card/|healthz)[^ ]*'
    r' HTTP/[\d.]+" (2|3)\d\d'
)
# Lines whose text repeats with a new timestamp: keep the part after the level name.
WARNING = re.compile(r"\b(WARNING|Warning|warn)\b[:/\]]?\s*(?P<text>.*)")


class ConsoleFilter:
    """Decides which child-process lines reach the console (thread-safe: one per child)."""

    def __init__(self, *, verbose: bool) -> None:
        self.verbose = verbose
        self.warned: set[str] = set()
        self.lock = threading.Lock()

    def keep(self, line: str) -> bool:
        if self.verbose:
            return True
        if POLLING.search(line):
            return False
        match = WARNING.search(line)
        if match:
            text = re.sub(r"\d", "#", match.group("text").strip())[:200]
            with self.lock:
                if text in self.warned:
                    return False
                self.warned.add(text)
        return True


def pump(name: str, stream: IO[str], console: ConsoleFilter) -> None:
    prefix = f"[{name}] "
    for line in stream:
        if console.keep(line):
            sys.stdout.write(prefix + line)
            sys.stdout.flush()


class Command(BaseCommand):
    help = "Start the web server, a Celery worker and the Celery beat scheduler together."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--addr", default="127.0.0.1:8000")
        parser.add_argument("--concurrency", type=int, default=2)
        parser.add_argument(
            "--verbose",
            action="store_true",
            help="show every request line (polling included), every warning and INFO logs",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        python = sys.executable
        level = "INFO" if options["verbose"] else "WARNING"
        commands = {
            "web": [python, "manage.py", "runserver", options["addr"], "--noreload"],
            "worker": [
                python,
                "-m",
                "celery",
                "-A",
                "hilapp",
                "worker",
                "-Q",
                "celery,api,gpu",
                "--loglevel",
                level,
                "--concurrency",
                str(options["concurrency"]),
            ],
            "beat": [python, "-m", "celery", "-A", "hilapp", "beat", "--loglevel", level],
        }
        env = os.environ.copy()
        env.setdefault("PYTHONUNBUFFERED", "1")
        console = ConsoleFilter(verbose=options["verbose"])
        procs = {}
        for name, cmd in commands.items():
            proc = subprocess.Popen(
                cmd,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                bufsize=1,
            )
            assert proc.stdout is not None
            threading.Thread(target=pump, args=(name, proc.stdout, console), daemon=True).start()
            procs[name] = proc
        quiet = "" if options["verbose"] else " (quiet console: --verbose shows every line)"
        self.stdout.write(f"hilapp running on http://{options['addr']}/ — Ctrl-C stops all{quiet}")
        try:
            while all(p.poll() is None for p in procs.values()):
                time.sleep(0.5)
            dead = [n for n, p in procs.items() if p.poll() is not None]
            self.stderr.write(f"{', '.join(dead)} stopped; stopping the rest")
        except KeyboardInterrupt:
            pass
        finally:
            for proc in procs.values():
                if proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
            for proc in procs.values():
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    proc.kill()
