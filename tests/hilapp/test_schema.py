"""The whole OpenAPI schema generates and validates without a single warning."""

from io import StringIO

import pytest
from django.core.management import call_command


@pytest.mark.django_db
def test_openapi_schema_validates_without_warnings() -> None:
    out = StringIO()
    call_command("spectacular", "--validate", "--fail-on-warn", stdout=out, stderr=StringIO())
    schema = out.getvalue()
    for path in (
        "/api/v1/frames/",
        "/api/v1/review/next/",
        "/api/v1/batches/",
        "/api/v1/exports/",
        "/api/v1/statistics/",
    ):
        assert path in schema
