"""Which Celery queue runs a pipeline step, by the provider that step will call.

API-bound providers go to ``api`` (a worker with many threads), local diffusers models to ``gpu``
(a worker that holds the pipelines in memory), the simulator to the default queue.
"""

from __future__ import annotations

from synthesis.providers.routing import RouteEntry

DEFAULT_QUEUE = "celery"
QUEUE_BY_PROVIDER = {"openai": "api", "gemini": "api", "diffusers": "gpu", "sim": DEFAULT_QUEUE}
# Every queue a pipeline step can be sent to, the default first.
PIPELINE_QUEUES = (DEFAULT_QUEUE, *sorted(set(QUEUE_BY_PROVIDER.values()) - {DEFAULT_QUEUE}))


def queue_for(entry: RouteEntry | None) -> str:
    if entry is None:
        return DEFAULT_QUEUE
    return QUEUE_BY_PROVIDER.get(entry.provider, DEFAULT_QUEUE)
