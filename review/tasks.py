"""Periodic review housekeeping (thin task; the service does the work)."""

from celery import shared_task

from review.services import review_leases_expire


@shared_task(name="review.tasks.expire_leases")
def expire_leases() -> int:
    return review_leases_expire()
