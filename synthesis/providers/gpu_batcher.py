"""A micro-batcher for the GPU worker: concurrent requests of one shape become one call.

The ``gpu`` Celery worker runs with a thread pool; each thread's ``generate`` submits a job and
blocks on it. One dispatcher thread per batcher takes the first waiting job, then gathers
further jobs with the same key (size, steps, number of input images, …) until the batch is
full or ``max_wait_s`` has passed, runs them as one pipeline call and hands each thread its
result. Jobs of another shape wait for the next round. Only the dispatcher touches the
pipeline, so pipelines (which are not thread-safe) are used one batch at a time.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)

FLUX, QWEN_EDIT = "flux", "qwen-image-edit"


@dataclass
class _Queued:
    key: Hashable
    payload: Any
    future: Future[Any] = field(default_factory=Future)


class MicroBatcher:
    def __init__(
        self,
        run: Callable[[Sequence[Any]], Sequence[Any]],
        *,
        max_batch: int,
        max_wait_s: float,
        name: str = "gpu",
    ) -> None:
        self._run = run
        self.max_batch = max(1, max_batch)
        self.max_wait_s = max(0.0, max_wait_s)
        self.name = name
        self._inbox: queue.Queue[_Queued] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self.batch_sizes: list[int] = []  # one entry per pipeline call (observability, tests)

    def submit(self, key: Hashable, payload: Any) -> Any:
        """Run ``payload`` (batched with others of the same ``key``); block until it is done."""
        self._ensure_started()
        job = _Queued(key, payload)
        self._inbox.put(job)
        return job.future.result()

    def _ensure_started(self) -> None:
        with self._start_lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._loop, name=f"microbatcher-{self.name}", daemon=True
                )
                self._thread.start()

    def _loop(self) -> None:
        pending: deque[_Queued] = deque()
        while True:
            if not pending:
                pending.append(self._inbox.get())
            batch = self._gather(pending)
            self._execute(batch)

    def _gather(self, pending: deque[_Queued]) -> list[_Queued]:
        first = pending.popleft()
        batch = [first]
        for job in list(pending):
            if len(batch) >= self.max_batch:
                break
            if job.key == first.key:
                pending.remove(job)
                batch.append(job)
        deadline = time.monotonic() + self.max_wait_s
        while len(batch) < self.max_batch:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                job = self._inbox.get(timeout=left)
            except queue.Empty:
                break
            (batch if job.key == first.key else pending).append(job)
        return batch

    def _execute(self, batch: list[_Queued]) -> None:
        self.batch_sizes.append(len(batch))
        try:
            results = self._run([job.payload for job in batch])
            if len(results) != len(batch):
                raise RuntimeError(f"batch of {len(batch)} returned {len(results)} results")
        except BaseException as exc:  # every waiting thread must hear about it
            for job in batch:
                job.future.set_exception(exc)
            return
        for job, result in zip(batch, results, strict=True):
            job.future.set_result(result)


@dataclass
class Job:
    """One image request as the pipelines take it (the batch key groups equal shapes)."""

    prompt: str
    images: list[Any]  # PIL images
    width: int
    height: int
    steps: int
    guidance: float
    seed: int


def run_pipeline_batch(pipe: Any, *, family: str, plus: bool, jobs: Sequence[Job]) -> list[Any]:
    """One pipeline call for jobs of one shape; one RGB PIL image per job, in order.

    Kept free of Django so that the GPU benchmark drives exactly this code.
    """
    import torch

    first = jobs[0]
    generators = [torch.Generator(device="cpu").manual_seed(job.seed) for job in jobs]
    common: dict[str, Any] = {
        "height": first.height,
        "width": first.width,
        "num_inference_steps": first.steps,
        "generator": generators,
    }
    prompts = [job.prompt for job in jobs]
    with torch.inference_mode():
        if family == FLUX:
            output = pipe(prompt=prompts, guidance_scale=first.guidance, **common)
        else:
            cfg: dict[str, Any] = {"true_cfg_scale": first.guidance}
            if first.guidance > 1:  # true CFG needs a negative prompt
                cfg["negative_prompt"] = [" "] * len(jobs) if len(jobs) > 1 else " "
            if plus:  # the Plus pipeline takes one prompt with a list of input images
                output = pipe(prompt=prompts[0], image=first.images, **cfg, **common)
            else:  # one input image per prompt
                images = [job.images[0] for job in jobs]
                output = pipe(
                    prompt=prompts if len(jobs) > 1 else prompts[0],
                    image=images if len(jobs) > 1 else images[0],
                    **cfg,
                    **common,
                )
    return [image.convert("RGB") for image in output.images]
