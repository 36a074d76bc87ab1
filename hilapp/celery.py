"""The Celery application. Settings come from Django's (CELERY_* names)."""

import os

from celery import Celery, Task
from celery.signals import before_task_publish, task_postrun, task_prerun, worker_init

from synthesis.queue_backlog import stamp_sent_at

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hilapp.settings.base")

app = Celery("hilapp")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
# Every message says when it was sent: the reconciler leaves a unit alone while its message may
# still be waiting in its queue (synthesis/queue_backlog.py).
before_task_publish.connect(stamp_sent_at, weak=False)


def _close_old_connections(sender: Task, **_: object) -> None:
    """A worker's database connections outlive a task (``CELERY_DB_REUSE_MAX``): close those
    past ``DB_CONN_MAX_AGE`` or left unusable by an error (a restarted database), as Django does
    around a request, so the next task connects afresh. Not in eager mode: the task runs inside
    its caller, whose connection (and transaction) is not the task's to close."""
    if getattr(sender.request, "is_eager", False):
        return
    from django.db import close_old_connections

    close_old_connections()


task_prerun.connect(_close_old_connections, weak=False)
task_postrun.connect(_close_old_connections, weak=False)


@app.on_after_finalize.connect
def _schedule_reconciler(sender: Celery, **_: object) -> None:
    from django.conf import settings

    sender.add_periodic_task(
        settings.HILAPP_RECONCILE_EVERY_S,
        sender.signature("synthesis.tasks.reconcile"),
        name="reconcile stuck work",
    )
    sender.add_periodic_task(
        settings.HILAPP_REVIEW_LEASE_S / 4,
        sender.signature("review.tasks.expire_leases"),
        name="return expired review leases",
    )


@worker_init.connect
def _warm_up_gpu_pipelines(sender: object, **_: object) -> None:
    # A gpu worker compiles its pipelines before it consumes (synthesis/providers/diffusers_worker).
    from synthesis.providers.diffusers_worker import warm_up_if_gpu_worker

    warm_up_if_gpu_worker(sender)
