"""A gpu worker loads and compiles its pipelines before it takes its first task.

Connected to Celery's ``worker_init`` signal (``hilapp/celery.py``), which Celery sends in the
worker's main process before its consumer starts: while the handler runs, the worker neither
takes messages nor answers pings, and its "ready" line comes after. Workers that do not consume
the ``gpu`` queue are left alone. A warm-up that fails stops the worker with the reason, rather
than letting it take tasks it cannot run.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

from synthesis.providers.queues import QUEUE_BY_PROVIDER

log = logging.getLogger(__name__)

GPU_QUEUE = QUEUE_BY_PROVIDER["diffusers"]


def consumes_gpu_queue(worker: Any) -> bool:
    return GPU_QUEUE in worker.app.amqp.queues.consume_from


def warm_up_if_gpu_worker(worker: Any) -> None:
    if not consumes_gpu_queue(worker):
        return
    if not logging.getLogger().handlers:  # Celery sets up its logging only after worker_init
        logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    from synthesis.providers import diffusers
    from synthesis.providers.base import ProviderError

    log.info("gpu worker: loading and warming up the diffusers pipelines before consuming")
    started = time.perf_counter()
    try:
        ready = diffusers.warm_up_configured()
    except ProviderError as exc:
        log.error("gpu worker: warm-up failed, not starting: %s", exc)
        raise SystemExit(f"gpu worker warm-up failed: {exc}") from exc
    log.info(
        "gpu worker: warm-up finished in %.1fs (%s); consuming now",
        time.perf_counter() - started,
        ", ".join(f"{fam} {seconds:.1f}s" for fam, seconds in ready.items()) or "no pipelines",
    )
