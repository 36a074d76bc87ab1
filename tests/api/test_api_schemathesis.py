"""Schemathesis against the served OpenAPI schema, as admin, expert and consumer.

Every generated request is sent three times, once per role's API token; every answer must be
a non-5xx whose body and content type match the schema for its status. The number of
examples per operation is ``HILAPP_SCHEMATHESIS_EXAMPLES`` (default 25: a few minutes on two
cores). Operations that start work (a batch launch, an export) are left to hand-made tests in
``tests/hardening``: a generated launch of 100,000 units would spend the run creating rows.

The failures are collected (not raised inside Hypothesis, which would stop and shrink), so
one run reports every distinct problem with the request that showed it.
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
)

from hilapp.tokens import token_issue

pytestmark = pytest.mark.schema

EXAMPLES = int(os.environ.get("HILAPP_SCHEMATHESIS_EXAMPLES", "25"))
ROLES = ("admin", "expert", "consumer")
CHECKS = [not_a_server_error, response_schema_conformance, content_type_conformance]
STARTS_WORK = {("POST", "/api/v1/batches/"), ("POST", "/api/v1/exports/")}


def _summary(role: str, label: str, exc: BaseException) -> str:
    """One line per failure: who, which operation, which checks failed, and the curl line."""
    text = str(exc)
    kinds = sorted({line.strip("- ").strip() for line in text.splitlines() if " ST1" in f" {line}"})
    curl = next((line.strip() for line in text.splitlines() if "curl " in line), "")
    detail = next((line.strip() for line in text.splitlines() if " is not " in line), "")
    return f"{role} {label}: {'; '.join(kinds) or type(exc).__name__} {detail} | {curl}"


def _run_operation(operation: Any, tokens: dict[str, str], tally: Counter[str]) -> list[str]:
    failures: list[str] = []

    @given(case=operation.as_strategy())
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
        derandomize=True,
    )
    def run(case: Any) -> None:
        tally["cases"] += 1
        for role in ROLES:
            tally["calls"] += 1
            try:
                case.call_and_validate(
                    headers={"Authorization": f"Token {tokens[role]}"}, checks=CHECKS
                )
            except (Exception, BaseExceptionGroup) as exc:  # a check failed: keep it, go on
                failures.append(_summary(role, operation.label, exc))

    run()
    return failures


def test_no_server_error_and_answers_match_the_schema(
    api_data: Any, make_user: Any, settings: Any
) -> None:
    from django.core.signals import request_finished, request_started
    from django.db import close_old_connections

    from hilapp.wsgi import application

    # As Django's test client does: the test's transaction must outlive each request.
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    logging.getLogger("django.request").setLevel(logging.ERROR)  # thousands of 4xx lines
    settings.HILAPP_THROTTLE_RATES = {}  # the probe is one client sending thousands of requests
    tokens = {role: token_issue(make_user(f"schema-{role}", role)) for role in ROLES}
    schema = schemathesis.openapi.from_wsgi("/api/schema/?format=json", application)
    tally: Counter[str] = Counter()
    failures: list[str] = []
    for result in schema.get_all_operations():
        operation = result.ok()
        if (operation.method.upper(), operation.path) in STARTS_WORK:
            continue
        tally["operations"] += 1
        failures += _run_operation(operation, tokens, tally)
    print(
        f"schemathesis: {tally['operations']} operations, {tally['cases']} generated cases, "
        f"{tally['calls']} requests, {len(failures)} failures"
    )
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)
    report = os.environ.get("HILAPP_SCHEMATHESIS_REPORT")
    if report:
        Path(report).write_text("\n".join(failures) + "\n")
    assert not failures, "\n\n".join(failures[:30])
