"""Review queue benchmark on PostgreSQL: 1,000,000 items, 3,000,000 votes, 50 concurrent experts.

Prints p50/p95/p99 of ``review_queue_next`` and of ``vote_cast`` as the experts see them (wall
time of the service call, from their own processes and connections), and what the experts' time
went to: looks per decided item (votes plus seats the item was decided under), the share of
decisions whose first two votes disagreed, the votes the consensus rule needed beyond two, and
votes refused because the item was already decided.

    .venv/bin/python benchmarks/review_queue.py                 # load once, then run 60 s
    .venv/bin/python benchmarks/review_queue.py --reload        # drop and load the data again
    .venv/bin/python benchmarks/review_queue.py --think-ms 0    # experts never pause
    .venv/bin/python benchmarks/review_queue.py --items 200000  # a smaller backlog (with --reload)

The database (``--db``, default ``hilapp_bench`` on ``--server``) is created if missing. The
data is generated in SQL (``generate_series``): the oldest 900,000 items are decided (three
votes each, a fourth on 200,000 HV3 splits), the newest 100,000 are open with 0, 1 or 2 votes;
votes come from 200 experts, of whom the 50 benchmark experts are part, so the queue has to
skip items they already voted on. Each vote has the lease it was cast under, so the lease table
is as large as months of reviewing make it. Historical audit events are not generated.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import random
import statistics
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

ITEMS = 1_000_000  # --items changes it (and OPEN_FROM: the newest 10 % are open)
OPEN_FROM = 900_001  # items with ids >= this are open
EXPERTS = 200
STAGES = ("hv1", "hv2", "hv3")


def _setup(server: str, db: str) -> None:
    os.environ["DATABASE_URL"] = f"{server.rstrip('/')}/{db}"
    os.environ.setdefault("SECRET_KEY", "benchmark-only-not-a-secret")
    os.environ.setdefault("HILAPP_VAR_DIR", "/tmp/hilapp-bench")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hilapp.settings.base")
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    import django

    django.setup()


def _ensure_database(server: str, db: str, reload: bool) -> None:
    import psycopg

    with psycopg.connect(f"{server.rstrip('/')}/postgres", autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [db]).fetchone()
        if exists and reload:
            conn.execute(f'DROP DATABASE "{db}" WITH (FORCE)')
            exists = None
        if not exists:
            conn.execute(f'CREATE DATABASE "{db}"')


def load_sql() -> list[str]:
    return [
        sql.replace("{ITEMS}", str(ITEMS)).replace("{OPEN_FROM}", str(OPEN_FROM))
        for sql in LOAD_SQL
    ]


LOAD_SQL = [
    # Items: hv1 40 %, hv2 30 %, hv3 30 %; ids 1..900,000 decided, the rest open.
    """
    INSERT INTO review_reviewitem (id, stage, subject_id, subject_label, priority, status,
        votes_count, lead_votes, leases_active, lease_expires_min, decided_choice, created_at,
        decided_at)
    SELECT g,
        CASE WHEN g % 10 < 4 THEN 'hv1' WHEN g % 10 < 7 THEN 'hv2' ELSE 'hv3' END,
        g, 'subject ' || g, 0,
        CASE WHEN g >= {OPEN_FROM} THEN 'open' ELSE 'decided' END,
        CASE WHEN g >= {OPEN_FROM} THEN g % 3
             WHEN g % 10 >= 7 AND g % 4 <> 0 THEN 4 ELSE 3 END,
        CASE WHEN g >= {OPEN_FROM} THEN LEAST(g % 3, 1) ELSE 2 END,
        0, NULL,
        CASE WHEN g >= {OPEN_FROM} THEN ''
             WHEN g % 10 >= 7 THEN 'correct' ELSE 'approve' END,
        now() - make_interval(secs => ({ITEMS} - g) * 2),
        CASE WHEN g >= {OPEN_FROM} THEN NULL ELSE now() - make_interval(secs => ({ITEMS} - g)) END
    FROM generate_series(1, {ITEMS}) AS g
    """,
    # Votes: vote k of item g has id 4g+k and expert (7g + 53k) mod 200 (distinct for k < 4).
    """
    INSERT INTO review_vote (id, item_id, expert_id, stage, choice, comment, idempotency_key,
        image_name, instruction, guideline_version, revisions, created_at)
    SELECT 4 * i.id + k, i.id, u.id, i.stage,
        CASE WHEN i.stage = 'hv3' THEN (ARRAY['correct','regenerate','discard','correct'])[k + 1]
             ELSE (ARRAY['approve','reject','approve','approve'])[k + 1] END,
        '', 'bench-' || i.id || '-' || k,
        '', CASE WHEN i.stage = 'hv3' AND k IN (0, 3) THEN 'fix the hands' ELSE '' END,
        '', 0, i.created_at + make_interval(secs => k)
    FROM review_reviewitem i
    CROSS JOIN LATERAL generate_series(0, i.votes_count - 1) AS k
    JOIN bench_experts u ON u.n = (7 * i.id + 53 * k) % 200
    """,
    # Leases: every historical vote was cast under a lease (a look), so the lease table is as
    # large as it is after months of reviewing and the queue's plans are the ones it gets then.
    """
    INSERT INTO review_reviewlease (item_id, expert_id, status, acquired_at, expires_at,
        ended_at)
    SELECT item_id, expert_id, 'voted', created_at - interval '30 seconds',
        created_at + interval '570 seconds', created_at
    FROM review_vote
    """,
    """
    INSERT INTO review_reviewdecision (item_id, stage, subject_id, choice, deciding_vote_id,
        comment_summary, image_name, instruction, decided_at)
    SELECT id, stage, subject_id, decided_choice, 4 * id + votes_count - 1, '', '', '',
        decided_at
    FROM review_reviewitem WHERE status = 'decided'
    """,
]


def load(server: str, db: str) -> None:
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.db import connection

    from hilapp.roles import EXPERTS as EXPERTS_GROUP
    from hilapp.roles import add_to_role
    from review.models import ReviewItem

    call_command("migrate", verbosity=0)
    if ReviewItem.objects.exists():
        print("data already loaded (use --reload to load again)")
        return
    started = time.perf_counter()
    user_model = get_user_model()
    users = user_model.objects.bulk_create(
        [user_model(username=f"bench-expert-{n:03d}") for n in range(EXPERTS)]
    )
    for user in users[:50]:
        add_to_role(user, EXPERTS_GROUP)
    with connection.cursor() as cur:
        cur.execute("CREATE TEMP TABLE bench_experts (n int PRIMARY KEY, id bigint)")
        cur.execute(
            "INSERT INTO bench_experts SELECT row_number() OVER (ORDER BY id) - 1, id "
            "FROM auth_user WHERE username LIKE 'bench-expert-%%'"
        )
        for sql in load_sql():
            t0 = time.perf_counter()
            cur.execute(sql)
            print(f"  {sql.split()[2]}: {cur.rowcount:,} rows in {time.perf_counter() - t0:.1f} s")
        for table in (
            "review_reviewitem",
            "review_vote",
            "review_reviewlease",
            "review_reviewdecision",
        ):
            cur.execute(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                f"(SELECT max(id) FROM {table}))"
            )
        cur.execute("ANALYZE")
    print(f"loaded in {time.perf_counter() - started:.0f} s")


def _expert_thread(
    user_id: int, seconds: float, think_ms: float, seed: int, out: dict[str, list[float]]
) -> None:
    from django.contrib.auth import get_user_model
    from django.db import connection

    from review.services import VoteRefused, review_queue_next, vote_cast
    from review.stages import choices_for

    rng = random.Random(seed)
    expert = get_user_model().objects.get(pk=user_id)
    stage = STAGES[seed % len(STAGES)]
    deadline = time.monotonic() + seconds
    # Experts arrive at random moments over the first think time, as a team does, rather than
    # all on the same millisecond (a burst that only a benchmark's start produces).
    time.sleep(rng.uniform(0, think_ms / 1000))
    try:
        while time.monotonic() < deadline:
            t0 = time.perf_counter()
            item = review_queue_next(expert=expert, stage=stage)
            out["next"].append((time.perf_counter() - t0) * 1000)
            if item is None:
                out["empty"].append(1)
                continue
            if think_ms:
                time.sleep(rng.uniform(0.5, 1.5) * think_ms / 1000)
            choice = rng.choice(choices_for(stage))
            extra: dict[str, Any] = {"instruction": "fix the hands"} if choice == "correct" else {}
            t0 = time.perf_counter()
            try:
                vote_cast(
                    item_id=item.pk,
                    expert=expert,
                    choice=choice,
                    idempotency_key=uuid.uuid4().hex,
                    **extra,
                )
                out["vote"].append((time.perf_counter() - t0) * 1000)
            except VoteRefused as exc:
                out["refused"].append(1)
                out.setdefault(f"refused:{exc.code}", []).append(1)
    except Exception as exc:
        out.setdefault(f"error:{type(exc).__name__}: {exc}", []).append(1)
        raise
    finally:
        connection.close()


def _process(args: tuple[str, str, list[int], float, float, int], queue: Any) -> None:
    server, db, user_ids, seconds, think_ms, base_seed = args
    _setup(server, db)
    from review.handlers import register_decision_handler

    # The generated subjects do not exist in synthesis: measure review's own work only.
    for stage in (*STAGES, "audit"):
        register_decision_handler(stage, lambda decision: None)
    out: dict[str, list[float]] = {"next": [], "vote": [], "empty": [], "refused": []}
    threads = [
        threading.Thread(target=_expert_thread, args=(uid, seconds, think_ms, base_seed + n, out))
        for n, uid in enumerate(user_ids)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    queue.put(out)


def _pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def effort(since: Any) -> None:
    """Looks per decided item for the items decided during the run, per stage and in all."""
    from collections import defaultdict

    from review.models import EventKind, ReviewDecision, ReviewEvent, Vote

    decided = dict(
        ReviewDecision.objects.filter(decided_at__gte=since).values_list("item_id", "stage")
    )
    votes: dict[int, list[str]] = defaultdict(list)
    for item_id, choice in (
        Vote.objects.filter(item_id__in=list(decided))
        .order_by("pk")
        .values_list("item_id", "choice")
    ):
        votes[item_id].append(choice)
    wasted: dict[int, int] = defaultdict(int)
    for (item_id,) in ReviewEvent.objects.filter(
        item_id__in=list(decided),
        kind=EventKind.LEASE_RELEASED,
        data__reason="decided",
        created_at__gte=since,
    ).values_list("item_id"):
        wasted[item_id] += 1
    print("decided during the run (votes before the run included):")
    for stage in (*STAGES, "all"):
        ids = [i for i, s in decided.items() if stage in ("all", s)]
        if not ids:
            continue
        n = len(ids)
        cast = sum(len(votes[i]) for i in ids)
        lost = sum(wasted[i] for i in ids)
        split = sum(1 for i in ids if len(votes[i]) >= 2 and votes[i][0] != votes[i][1])
        extra = (cast - 2 * n) / n
        print(
            f"  {stage:>4}: {n:5d} items  looks/decision {(cast + lost) / n:.3f}  "
            f"votes/decision {cast / n:.3f}  wasted looks/decision {lost / n:.3f}  "
            f"first pair disagreed {split / n:.3f}  needed beyond two {extra:.3f}  "
            f"bound 2 + needed + 0.05 = {2 + extra + 0.05:.3f}"
        )


def run(server: str, db: str, *, experts: int, procs: int, seconds: float, think_ms: float) -> None:
    from django.contrib.auth import get_user_model
    from django.db import connections
    from django.utils import timezone

    ids = list(
        get_user_model()
        .objects.filter(username__startswith="bench-expert-")
        .order_by("pk")
        .values_list("pk", flat=True)[:experts]
    )
    since = timezone.now()
    connections.close_all()
    ctx = mp.get_context("fork")
    queue = ctx.Queue()
    workers = [
        ctx.Process(
            target=_process,
            args=((server, db, ids[p::procs], seconds, think_ms, 1000 * p + p), queue),
        )
        for p in range(procs)
    ]
    for w in workers:
        w.start()
    merged: dict[str, list[float]] = {}
    for _ in workers:
        for key, values in queue.get().items():
            merged.setdefault(key, []).extend(values)
    for w in workers:
        w.join()
    print(
        f"\n{len(ids)} experts in {procs} processes for {seconds:.0f} s, "
        f"think time {think_ms:.0f} ms (±50 %) between next and vote"
    )
    for key in ("next", "vote"):
        values = merged.get(key, [])
        if not values:
            print(f"{key:>5}: no samples")
            continue
        print(
            f"{key:>5}: n={len(values):6d}  p50={_pct(values, 50):6.1f} ms  "
            f"p95={_pct(values, 95):6.1f} ms  p99={_pct(values, 99):6.1f} ms  "
            f"mean={statistics.fmean(values):6.1f} ms  max={max(values):7.1f} ms"
        )
    refusals = {k: len(v) for k, v in merged.items() if k.startswith("refused:")}
    errors = {k: len(v) for k, v in merged.items() if k.startswith("error:")}
    if errors:
        print(f"errors: {errors}")
    print(f"empty answers: {len(merged.get('empty', []))}, refused votes: {refusals or 0}")
    print(f"refused as decided: {refusals.get('refused:decided', 0)}")
    effort(since)


def main() -> None:
    global ITEMS, OPEN_FROM
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--server", default="postgres://postgres@127.0.0.1:5432")
    parser.add_argument("--db", default="hilapp_bench")
    parser.add_argument("--reload", action="store_true")
    parser.add_argument("--items", type=int, default=ITEMS, help="backlog size (with --reload)")
    parser.add_argument("--experts", type=int, default=50)
    parser.add_argument("--procs", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--think-ms", type=float, default=1000)
    args = parser.parse_args()
    ITEMS, OPEN_FROM = args.items, args.items - args.items // 10 + 1
    _ensure_database(args.server, args.db, args.reload)
    _setup(args.server, args.db)
    load(args.server, args.db)
    run(
        args.server,
        args.db,
        experts=args.experts,
        procs=args.procs,
        seconds=args.seconds,
        think_ms=args.think_ms,
    )


if __name__ == "__main__":
    main()
