"""Review over HTTP: concurrent experts through the production web server on PostgreSQL.

The data is benchmarks/review_queue.py's (1,000,000 review items by default, 90 % decided with
three or four votes, the newest 10 % open; 200 experts, 50 of them in the benchmark). The web
tier is started as in production: ``python -m hilapp.processes release`` then ``web`` (gunicorn,
DEBUG off). Each expert does what the review page does: GET the next card
(``/review/<stage>/next-card/?exclude=…``), think, POST the vote to
``/api/v1/review/items/<id>/votes/`` (session cookie + CSRF header, idempotency key, dwell), and
GET the next card. Printed: p50/p95/p99 of vote-to-next-card (the vote's POST and the next
card's GET, back to back: the page's case when its prefetch has not landed yet), of each request
alone, the requests per second, errors by status, and the load average.

    .venv/bin/python benchmarks/review_http.py --reload --items 1000000   # load, then run 60 s
    .venv/bin/python benchmarks/review_http.py --seconds 30 --experts 50

The subjects of the generated items do not exist in the synthesis tables: cards render the
"no longer exists" fragment and decisions find nothing to apply, so the figures are the review
tier's own (queue, vote, consensus, card rendering), not the presenters' image lookups.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import random
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import benchmarks.review_queue as seed  # noqa: E402 - the same data, loaded the same way

GOAL_MS = 150.0
STAGES = ("hv1", "hv2", "hv3")
CHOICES = {"hv1": ("approve", "reject"), "hv2": ("approve", "reject"), "hv3": ("discard",)}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def sessions_for(user_ids: list[int]) -> list[tuple[str, str]]:
    """(session id, CSRF token) per expert, as a login would leave in the browser."""
    from importlib import import_module

    from django.conf import settings
    from django.contrib.auth import (
        BACKEND_SESSION_KEY,
        HASH_SESSION_KEY,
        SESSION_KEY,
        get_user_model,
    )
    from django.middleware.csrf import _get_new_csrf_string  # type: ignore[attr-defined]

    store = import_module(settings.SESSION_ENGINE).SessionStore
    out = []
    for user in get_user_model().objects.filter(pk__in=user_ids).order_by("pk"):
        session = store()
        session[SESSION_KEY] = str(user.pk)
        session[BACKEND_SESSION_KEY] = settings.AUTHENTICATION_BACKENDS[0]
        session[HASH_SESSION_KEY] = user.get_session_auth_hash()
        session.create()
        out.append((session.session_key, _get_new_csrf_string()))
    return out


def start_web(db_url: str, var: Path, *, workers: int, threads: int) -> tuple[Any, str]:
    port = free_port()
    env = dict(
        os.environ,
        DJANGO_SETTINGS_MODULE="hilapp.settings.base",
        DEBUG="0",
        HILAPP_HTTPS="0",
        DATABASE_URL=db_url,
        HILAPP_VAR_DIR=str(var),
        STATIC_ROOT=str(var / "static"),
        ALLOWED_HOSTS="127.0.0.1,localhost",
        HILAPP_WEB_BIND=f"127.0.0.1:{port}",
        GUNICORN_WORKERS=str(workers),
        GUNICORN_THREADS=str(threads),
        LOG_LEVEL="WARNING",
    )
    run = [sys.executable, "-m", "hilapp.processes"]
    release = subprocess.run([*run, "release"], cwd=ROOT, env=env, capture_output=True, text=True)
    if release.returncode:
        sys.exit(f"release failed:\n{release.stderr[-3000:]}")
    log = open(var / "web.log", "wb")  # noqa: SIM115 - open for the server's lifetime
    proc = subprocess.Popen([*run, "web"], cwd=ROOT, env=env, stdout=log, stderr=log)
    base = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            if requests.get(f"{base}/healthz", timeout=2).ok:
                return proc, base
        except requests.RequestException:
            pass
        if proc.poll() is not None:
            sys.exit(f"web stopped: see {var / 'web.log'}")
        time.sleep(0.2)
    sys.exit("web did not answer /healthz")


def expert(
    base: str,
    session_id: str,
    csrf: str,
    stage: str,
    seconds: float,
    think_ms: float,
    rng_seed: int,
    out: dict[str, list[float]],
) -> None:
    rng = random.Random(rng_seed)
    http = requests.Session()
    http.cookies.set("sessionid", session_id, domain="127.0.0.1")
    http.cookies.set("csrftoken", csrf, domain="127.0.0.1")
    seen: list[str] = []

    def next_card() -> str | None:
        t0 = time.perf_counter()
        resp = http.get(
            f"{base}/review/{stage}/next-card/",
            params={"exclude": ",".join(seen[-500:])} if seen else None,
            headers={"X-Requested-With": "fetch"},
            timeout=30,
        )
        out["card"].append((time.perf_counter() - t0) * 1000)
        if resp.status_code == 204:
            out["empty"].append(1)
            return None
        if resp.status_code != 200:
            out[f"card HTTP {resp.status_code}"].append(1)
            return None
        item = resp.headers["X-Review-Item"]
        seen.append(item)
        return item

    deadline = time.monotonic() + seconds
    item = next_card()
    while time.monotonic() < deadline:
        if item is None:
            time.sleep(0.5)
            item = next_card()
            continue
        shown = time.perf_counter()
        if think_ms:
            time.sleep(rng.uniform(0.5, 1.5) * think_ms / 1000)
        t0 = time.perf_counter()
        resp = http.post(
            f"{base}/api/v1/review/items/{item}/votes/",
            data={
                "choice": rng.choice(CHOICES[stage]),
                "idempotency_key": uuid.uuid4().hex,
                "dwell_ms": str(round((t0 - shown) * 1000)),
            },
            headers={"X-CSRFToken": csrf, "Referer": base + "/"},
            timeout=30,
        )
        voted = time.perf_counter()
        out["vote"].append((voted - t0) * 1000)
        if resp.status_code not in (200, 201):
            out[f"vote HTTP {resp.status_code}"].append(1)
        item = next_card()
        out["vote_to_next"].append((time.perf_counter() - t0) * 1000)


def process(args: tuple[str, list[tuple[str, str]], float, float, int], queue: Any) -> None:
    base, sessions, seconds, think_ms, base_seed = args
    from collections import defaultdict

    out: dict[str, list[float]] = defaultdict(list)
    threads = [
        threading.Thread(
            target=expert,
            args=(
                base,
                sid,
                csrf,
                STAGES[(base_seed + n) % 3],
                seconds,
                think_ms,
                base_seed + n,
                out,
            ),
        )
        for n, (sid, csrf) in enumerate(sessions)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    queue.put(dict(out))


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))] if ordered else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--server", default="postgres://postgres@127.0.0.1:5432")
    parser.add_argument("--db", default="hilapp_bench")
    parser.add_argument("--reload", action="store_true")
    parser.add_argument("--items", type=int, default=seed.ITEMS)
    parser.add_argument("--experts", type=int, default=50)
    parser.add_argument("--procs", type=int, default=5, help="client processes")
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--think-ms", type=float, default=1000)
    parser.add_argument("--workers", type=int, default=3, help="gunicorn workers")
    parser.add_argument("--threads", type=int, default=4, help="gunicorn threads per worker")
    a = parser.parse_args()

    seed.ITEMS = a.items
    seed.OPEN_FROM = a.items - a.items // 10 + 1
    seed._ensure_database(a.server, a.db, a.reload)
    seed._setup(a.server, a.db)
    seed.load(a.server, a.db)
    from django.contrib.auth import get_user_model
    from django.db import connection

    from review.models import ReviewItem

    ids = list(
        get_user_model()
        .objects.filter(username__startswith="bench-expert-", groups__isnull=False)
        .order_by("pk")
        .values_list("pk", flat=True)[: a.experts]
    )
    sessions = sessions_for(ids)
    items = ReviewItem.objects.count()
    open_items = ReviewItem.objects.filter(decided_at__isnull=True).count()
    connection.close()

    var = Path(os.environ.get("HILAPP_VAR_DIR", "/tmp/hilapp-bench-http"))
    var.mkdir(parents=True, exist_ok=True)
    web, base = start_web(
        f"{a.server.rstrip('/')}/{a.db}", var, workers=a.workers, threads=a.threads
    )
    try:
        chunks = [sessions[i :: a.procs] for i in range(a.procs)]
        queue: Any = mp.get_context("spawn").Queue()
        procs = [
            mp.get_context("spawn").Process(
                target=process, args=((base, chunk, a.seconds, a.think_ms, 1000 * n), queue)
            )
            for n, chunk in enumerate(chunks)
            if chunk
        ]
        started = time.perf_counter()
        for p in procs:
            p.start()
        results = [queue.get() for _ in procs]
        for p in procs:
            p.join()
        elapsed = time.perf_counter() - started
        load = os.getloadavg()
    finally:
        web.terminate()
        web.wait(timeout=30)

    merged: dict[str, list[float]] = {}
    for r in results:
        for k, v in r.items():
            merged.setdefault(k, []).extend(v)
    print(
        f"review over HTTP: {items:,} items ({open_items:,} open), {len(sessions)} experts in "
        f"{len(procs)} client processes, think {a.think_ms:.0f} ms, {elapsed:.0f} s; gunicorn "
        f"{a.workers} workers x {a.threads} threads, DEBUG off, PostgreSQL; {os.cpu_count()} cores"
    )
    for key, label in (
        ("vote_to_next", "vote-to-next-card"),
        ("vote", "  vote POST"),
        ("card", "  next-card GET"),
    ):
        v = merged.get(key, [])
        print(
            f"{label:20s} n={len(v):6d}  p50 {pct(v, 50):7.1f} ms  p95 {pct(v, 95):7.1f} ms  "
            f"p99 {pct(v, 99):7.1f} ms"
        )
    votes = len(merged.get("vote", []))
    print(f"votes/s {votes / elapsed:.1f}; empty queues {len(merged.get('empty', []))}")
    errors = {k: len(v) for k, v in merged.items() if "HTTP" in k}
    print(f"errors: {errors or 'none'}")
    p95 = pct(merged.get("vote_to_next", []), 95)
    verdict = "met" if p95 <= GOAL_MS else "NOT met"
    print(f"goal p95 vote-to-next-card <= {GOAL_MS:.0f} ms: {verdict} ({p95:.1f} ms)")
    print(f"load average after the run: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")


if __name__ == "__main__":
    main()
