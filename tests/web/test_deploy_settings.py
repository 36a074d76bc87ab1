"""Deployment settings from the environment: the documented production environment passes
``check --deploy``; HTTPS defaults follow DEBUG; gunicorn and media settings refuse bad values."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PRODUCTION_ENV = ROOT / "deploy" / "production.env.example"
# Variables of the test run that must not leak into a "production" process.
TEST_ONLY = (
    "DATABASE_URL",
    "CELERY_BROKER_URL",
    "SECRET_KEY",
    "HILAPP_TESTING",
    "DEBUG",
    "DJANGO_ALLOW_ASYNC_UNSAFE",  # set by the browser tests for Playwright's event loop
)


def production_env() -> dict[str, str]:
    """The documented production environment, with a generated SECRET_KEY in its blank."""
    env: dict[str, str] = {}
    for line in PRODUCTION_ENV.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            env[key.strip()] = value.strip()
    assert env["SECRET_KEY"] == "", "the example must not ship a secret"
    env["SECRET_KEY"] = secrets.token_urlsafe(50)
    return env


def run(args: list[str], env: dict[str, str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    clean = {
        k: v
        for k, v in os.environ.items()
        if k not in TEST_ONLY
        and not k.startswith(
            ("AWS_", "SECURE_", "HILAPP_", "GUNICORN_", "MEDIA_", "SESSION_", "CSRF_")
        )
    }
    clean.update(HILAPP_VAR_DIR=str(tmp_path), DJANGO_SETTINGS_MODULE="hilapp.settings.base")
    clean.update(env)
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, env=clean, capture_output=True, text=True, timeout=120
    )


def check_deploy(env: dict[str, str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    return run(["manage.py", "check", "--deploy", "--fail-level", "WARNING"], env, tmp_path)


def test_the_documented_production_environment_passes_check_deploy(tmp_path: Path) -> None:
    result = check_deploy(production_env(), tmp_path)
    assert result.returncode == 0, result.stderr
    assert "System check identified no issues" in result.stdout


def test_without_the_https_settings_check_deploy_complains(tmp_path: Path) -> None:
    env = production_env()
    for key in [k for k in env if k.startswith(("SECURE_HSTS", "HILAPP_HTTPS"))]:
        del env[key]
    env["HILAPP_HTTPS"] = "0"  # a plain-HTTP site: what issue 12 found
    result = check_deploy(env, tmp_path)
    assert result.returncode != 0
    for warning in ("W004", "W008", "W012", "W016"):
        assert f"security.{warning}" in result.stderr


def settings_of(env: dict[str, str], tmp_path: Path, *names: str) -> list[str]:
    code = "from django.conf import settings as s; " + "; ".join(
        f"print(repr(s.{name}))" for name in names
    )
    result = run(["manage.py", "shell", "--no-imports", "-c", code], env, tmp_path)
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()


HTTPS_NAMES = ("SESSION_COOKIE_SECURE", "CSRF_COOKIE_SECURE", "SECURE_SSL_REDIRECT")


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"DEBUG": "0"}, ["True", "True", "True", "3600", "None"]),
        ({"DEBUG": "1"}, ["False", "False", "False", "0", "None"]),
        ({"DEBUG": "0", "HILAPP_HTTPS": "0"}, ["False", "False", "False", "0", "None"]),
        (
            {"DEBUG": "0", "HILAPP_PROXY_SSL_HEADER": "1", "CSRF_COOKIE_SECURE": "0"},
            ["True", "False", "True", "3600", "('HTTP_X_FORWARDED_PROTO', 'https')"],
        ),
    ],
    ids=["production", "debug", "plain-http", "behind-a-proxy"],
)
def test_https_defaults_follow_debug_and_each_can_be_set(
    env: dict[str, str], expected: list[str], tmp_path: Path
) -> None:
    names = (*HTTPS_NAMES, "SECURE_HSTS_SECONDS", "SECURE_PROXY_SSL_HEADER")
    assert settings_of({"SECRET_KEY": "k" * 50, **env}, tmp_path, *names) == expected


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"MEDIA_STORAGE_BACKEND": "myapp.PublicStorage"}, "media URLs must be signed"),
        (
            {"MEDIA_STORAGE_BACKEND": "storages.backends.s3.S3Storage"},
            "needs AWS_STORAGE_BUCKET_NAME",
        ),
        ({"HILAPP_MEDIA_URL_TTL_S": "10"}, "HILAPP_MEDIA_URL_TTL_S=10 must be at least 60"),
        ({"SECURE_HSTS_SECONDS": "a year"}, "SECURE_HSTS_SECONDS='a year' is not a valid"),
        ({"HILAPP_PROXY_SSL_HEADER": "maybe"}, "HILAPP_PROXY_SSL_HEADER='maybe' is not a valid"),
    ],
)
def test_bad_settings_name_the_variable(env: dict[str, str], message: str, tmp_path: Path) -> None:
    result = run(["manage.py", "check"], env, tmp_path)
    assert result.returncode != 0
    assert message in result.stderr


def gunicorn_config(env: dict[str, str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    args = ["-m", "gunicorn", "hilapp.wsgi:application", "--config", "python:hilapp.gunicorn_conf"]
    return run([*args, "--print-config"], env, tmp_path)


def test_gunicorn_reads_its_settings_from_the_environment(tmp_path: Path) -> None:
    env = {"HILAPP_WEB_BIND": "0.0.0.0:8123", "GUNICORN_WORKERS": "3", "GUNICORN_THREADS": "6"}
    env |= {"GUNICORN_TIMEOUT": "45", "GUNICORN_ACCESS_LOG": "-"}
    result = gunicorn_config(env, tmp_path)
    assert result.returncode == 0, result.stderr
    config = {
        key.strip(): value.strip()
        for key, _, value in (line.partition("=") for line in result.stdout.splitlines())
    }
    assert config["bind"] == "['0.0.0.0:8123']"
    assert (config["workers"], config["threads"], config["timeout"]) == ("3", "6", "45")
    assert config["accesslog"] == "-" and config["worker_class"] == "gthread"
    assert gunicorn_config({}, tmp_path).stdout.count("127.0.0.1:8000") == 1  # loopback default


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"GUNICORN_WORKERS": "many"}, "GUNICORN_WORKERS='many' is not a valid integer"),
        ({"GUNICORN_THREADS": "0"}, "GUNICORN_THREADS=0 must be at least 1"),
        ({"HILAPP_WEB_BIND": "8000"}, "HILAPP_WEB_BIND='8000': expected HOST:PORT"),
    ],
)
def test_gunicorn_refuses_bad_values(env: dict[str, str], message: str, tmp_path: Path) -> None:
    result = gunicorn_config(env, tmp_path)
    assert result.returncode != 0
    assert f"gunicorn configuration: {message}" in result.stderr
