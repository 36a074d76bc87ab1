"""What waits on each Celery queue and who listens to it, for the admins' batches page.

Work routed to a queue without a consumer waits forever without an error anywhere else (an api
worker not started, a gpu host down): the page warns about exactly that.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass

from synthesis.providers.queues import PIPELINE_QUEUES

log = logging.getLogger(__name__)

INSPECT_TIMEOUT_S = 1.0


@dataclass(frozen=True)
class QueueHealth:
    name: str
    waiting: int | None  # messages waiting (None: the broker did not say)
    consumers: tuple[str, ...]  # worker node names listening

    @property
    def stranded(self) -> bool:
        """Work waits and no worker listens."""
        return bool(self.waiting) and not self.consumers


def queue_depths() -> dict[str, int | None]:
    from hilapp.celery import app

    depths: dict[str, int | None] = {}
    with app.connection_for_read() as conn:
        channel = conn.default_channel
        for name in PIPELINE_QUEUES:
            try:
                declared = channel.queue_declare(queue=name, passive=True)  # type: ignore[attr-defined]
                depths[name] = int(declared.message_count)
            except Exception as exc:  # a queue nobody declared yet is empty
                log.debug("queue %s: %s", name, exc)
                depths[name] = 0
    return depths


def queue_consumers() -> dict[str, list[str]]:
    """Worker node names by the queues they consume (workers that answered within a second)."""
    from hilapp.celery import app

    listening: dict[str, list[str]] = {name: [] for name in PIPELINE_QUEUES}
    answers = None
    with contextlib.suppress(Exception):  # no broadcast support, or nobody answered
        answers = app.control.inspect(timeout=INSPECT_TIMEOUT_S).active_queues()
    for worker, queues in (answers or {}).items():
        for queue in queues:
            listening.setdefault(queue["name"], []).append(worker)
    return listening


def queues_health() -> list[QueueHealth]:
    depths = queue_depths()
    consumers = queue_consumers()
    return [
        QueueHealth(name, depths.get(name), tuple(sorted(consumers.get(name, []))))
        for name in PIPELINE_QUEUES
    ]
