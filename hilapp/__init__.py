"""hilapp: the Django project (settings, urls, Celery app)."""

from hilapp.celery import app as celery_app

__all__ = ["celery_app"]
