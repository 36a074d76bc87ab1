"""How far behind the broker's queues are: when the oldest message still waiting in each was sent.

A unit's lease starts when its step is sent, and the reconciler sends the step again once the
lease has run out. A queue that holds more than one lease of work (a batch launched faster than
its workers drain it) would then have every waiting unit sent again while its first message is
still in line: a duplicate message and a wasted look per unit per lease, adding to the backlog
that caused them. Queues are first in, first out, so a unit's message can still be waiting only
if the oldest message waiting in its queue was sent no later than the unit's step; otherwise a
worker has taken it (and died) or it was lost, and sending it again is right.

Every message carries the time it was sent (``SENT_AT_HEADER``): a unit's step carries the
``sent_at`` noted on the unit (``synthesis.dispatch``), so a unit whose own message heads the
queue compares equal; any other message is stamped as it is published. ``oldest_waiting`` reads
the stamp from the head of each queue on the Redis and filesystem brokers.
A queue whose head carries no stamp (a message sent before this code) is reported as empty, so
the reconciler then behaves as it did before: it sends on lease expiry.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import redis
from celery import current_app

SENT_AT_HEADER = "hilapp_sent_at"


def sent_at_headers(at: datetime) -> dict[str, str]:
    """The message headers of a step sent at ``at`` (ISO 8601: exact to the microsecond)."""
    return {SENT_AT_HEADER: at.isoformat()}


def stamp_sent_at(headers: dict[str, Any] | None = None, **_: object) -> None:
    """``before_task_publish`` handler: every message says when it was sent (a step already
    says so; a retry keeps its first message's time, which only makes it look older)."""
    if headers is not None:
        headers.setdefault(SENT_AT_HEADER, datetime.now(UTC).isoformat())


def oldest_waiting(queues: Iterable[str]) -> dict[str, datetime]:
    """For each of ``queues`` that holds waiting messages: when its oldest one was sent.

    Messages a worker has taken (running, or held for a retry's countdown) are not waiting."""
    url = str(current_app.conf.broker_url)
    if url.startswith(("redis://", "rediss://")):
        heads = _redis_heads(url, queues)
    elif url.startswith("filesystem://"):
        heads = _filesystem_heads(current_app.conf.broker_transport_options, queues)
    else:
        return {}
    oldest = {}
    for queue, messages in heads.items():
        stamps = [_sent_at(raw) for raw in messages]
        if stamps and None not in stamps:  # unstamped: sent before this code, time unknown
            oldest[queue] = min(at for at in stamps if at is not None)
    return oldest


def _redis_heads(url: str, queues: Iterable[str]) -> dict[str, list[bytes]]:
    # kombu's Redis transport LPUSHes each message onto a list named after the queue and
    # workers BRPOP from the other end, so the oldest waiting message is at index -1.
    client = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)
    try:
        with client.pipeline(transaction=False) as pipe:
            names = list(queues)
            for queue in names:
                pipe.lindex(queue, -1)
            return {q: [raw] for q, raw in zip(names, pipe.execute(), strict=True) if raw}
    finally:
        client.close()


def _filesystem_heads(options: dict[str, Any], queues: Iterable[str]) -> dict[str, list[bytes]]:
    # kombu's filesystem transport names each message "<monotonic ms>_<uuid>.<queue>.msg" and
    # consumes them in sorted order: messages sent within the same millisecond are taken in
    # any order, so the head of a queue is every message of its first millisecond.
    folder = options["data_folder_in"]
    wanted = {f"{queue}.msg": queue for queue in queues}
    first_ms: dict[str, str] = {}
    heads: dict[str, list[bytes]] = {}
    for name in sorted(os.listdir(folder)):
        queue = wanted.get(name.partition(".")[2])
        if queue is None:
            continue
        ms = name.partition("_")[0]
        if first_ms.setdefault(queue, ms) != ms:
            continue
        try:
            with open(os.path.join(folder, name), "rb") as f:
                heads.setdefault(queue, []).append(f.read())
        except FileNotFoundError:  # taken by a worker while we listed the folder
            if not heads.get(queue):
                del first_ms[queue]  # the next message is the head
    return heads


def _sent_at(raw: bytes) -> datetime | None:
    try:
        return datetime.fromisoformat(json.loads(raw)["headers"][SENT_AT_HEADER])
    except (ValueError, KeyError, TypeError):
        return None
