"""``when``: one date format for datetimes and the ISO strings that selectors return."""

from __future__ import annotations

from datetime import datetime

from django import template
from django.utils import formats, timezone
from django.utils.dateparse import parse_datetime

register = template.Library()


@register.filter
def when(value: datetime | str | None) -> str:
    """``Y-m-d H:i`` in the site's time zone (settings.FORMAT_MODULE_PATH), whatever the input."""
    if value in (None, ""):
        return ""
    moment = parse_datetime(value) if isinstance(value, str) else value
    if moment is None:
        return str(value)
    if timezone.is_aware(moment):
        moment = timezone.localtime(moment)
    return formats.date_format(moment, "DATETIME_FORMAT")
