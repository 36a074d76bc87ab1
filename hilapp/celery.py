"""The Celery application. Settings come from Django's (CELERY_* names)."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hilapp.settings.base")

app = Celery("hilapp")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


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
