"""Secrets never shown: debug pages, error reports and log lines redact them.

Django's ``SafeExceptionReporterFilter`` hides settings whose *name* looks secret (``*_KEY``,
``*SECRET*``, ``*TOKEN*``, ``*PASS*``, …), but a URL setting carries its password in the
*value*: ``DATABASE_URL``, ``CELERY_BROKER_URL``, ``HILAPP_REDIS_URL`` and the cache's
``LOCATION`` were shown in full on a DEBUG page. ``SecretsReporterFilter`` also redacts the
password of every URL in any setting, request header or frame variable, and stays active
with DEBUG on (the default filter only cleans settings then, not frames and POST data).
``RedactingLogFilter`` does the same for log records.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from django.views.debug import ExceptionReporter, SafeExceptionReporterFilter

REDACTED = "********************"
# scheme://user:password@host → the password; also scheme://:password@host (Redis).
URL_PASSWORD = re.compile(r"(?P<head>[a-zA-Z][a-zA-Z0-9+.\-]*://[^:/@\s'\"]*:)[^@\s'\"/]+(?=@)")
SECRET_NAME = re.compile(r"API|AUTH|TOKEN|KEY|SECRET|PASS|SIGNATURE|HTTP_COOKIE|CREDENTIAL", re.I)


def redact(text: str) -> str:
    """``text`` with the password of every URL in it replaced."""
    return URL_PASSWORD.sub(lambda m: m.group("head") + REDACTED, text)


def _redact_value(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {k: _redact_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_redact_value(v) for v in value)
    return value


class SecretsReporterFilter(SafeExceptionReporterFilter):
    hidden_settings = SECRET_NAME

    def is_active(self, request: Any) -> bool:
        return True

    def cleanse_setting(self, key: Any, value: Any) -> Any:
        return _redact_value(super().cleanse_setting(key, value))

    def cleanse_special_types(self, request: Any, value: Any) -> Any:
        value = super().cleanse_special_types(request, value)
        if isinstance(value, str | dict | list | tuple):
            return _redact_value(value)
        try:
            shown = repr(value)
        except Exception:  # a broken __repr__ must not break the error page
            return value
        return redact(shown) if URL_PASSWORD.search(shown) else value


class RedactingLogFilter(logging.Filter):
    """Rewrites a record's message with URL passwords redacted (before any handler sees it)."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:
            return True
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


class SecretsExceptionReporter(ExceptionReporter):
    """The error page's exception message with URL passwords redacted (a driver's message
    often quotes the connection string it failed to use)."""

    def get_traceback_data(self) -> dict[str, Any]:
        data = super().get_traceback_data()
        if isinstance(data.get("exception_value"), str):
            data["exception_value"] = redact(data["exception_value"])
        return data
