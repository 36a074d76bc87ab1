"""Settings from the environment: typed helpers reject bad values; production needs a key."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from hilapp.settings.env import env_bool, env_choice, env_float, env_int, env_list

ROOT = Path(__file__).resolve().parents[2]


def test_typed_helpers_parse_and_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("X_BOOL", "yes")
    monkeypatch.setenv("X_INT", " 42 ")
    monkeypatch.setenv("X_LIST", "a, b,,c")
    assert env_bool("X_BOOL", False) is True
    assert env_int("X_INT", 0) == 42
    assert env_list("X_LIST", []) == ["a", "b", "c"]
    assert env_float("X_UNSET", 1.5) == 1.5


@pytest.mark.parametrize(
    ("name", "value", "call", "message"),
    [
        ("X_BOOL", "maybe", lambda: env_bool("X_BOOL", False), "X_BOOL='maybe' is not a valid"),
        ("X_INT", "4.5", lambda: env_int("X_INT", 1), "X_INT='4.5' is not a valid integer"),
        ("X_INT", "-1", lambda: env_int("X_INT", 1, minimum=0), "must be at least 0"),
        ("X_F", "11", lambda: env_float("X_F", 1, maximum=10), "must be at most 10"),
        ("X_C", "red", lambda: env_choice("X_C", "on", {"on", "off"}), "must be one of"),
    ],
)
def test_bad_values_fail_loudly(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, call: object, message: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ImproperlyConfigured, match=message):
        call()  # type: ignore[operator]


def _check(env: dict[str, str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    clean = {
        k: v
        for k, v in os.environ.items()
        if k not in ("DATABASE_URL", "CELERY_BROKER_URL", "SECRET_KEY", "HILAPP_TESTING")
    }
    clean.update(HILAPP_VAR_DIR=str(tmp_path), DJANGO_SETTINGS_MODULE="hilapp.settings.base", **env)
    return subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=ROOT,
        env=clean,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_production_settings_require_a_secret_key(tmp_path: Path) -> None:
    result = _check({"CELERY_BROKER_URL": "redis://127.0.0.1:6379/0"}, tmp_path)
    assert result.returncode != 0
    assert "SECRET_KEY is required" in result.stderr


def test_embedded_defaults_need_nothing(tmp_path: Path) -> None:
    result = _check({}, tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "dev-secret-key").exists()


def test_a_bad_setting_names_the_variable(tmp_path: Path) -> None:
    result = _check({"HILAPP_VIESCORE_THRESHOLD": "high"}, tmp_path)
    assert result.returncode != 0
    assert "HILAPP_VIESCORE_THRESHOLD='high' is not a valid number" in result.stderr


def test_export_settings_come_from_the_environment(tmp_path: Path) -> None:
    script = (
        "from synthesis.export.jobs import exports_root; from django.conf import settings; "
        "print(exports_root(), settings.HILAPP_EXPORT_READERS)"
    )
    clean = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "CELERY_BROKER_URL")}
    clean.update(
        HILAPP_VAR_DIR=str(tmp_path),
        DJANGO_SETTINGS_MODULE="hilapp.settings.base",
        HILAPP_EXPORT_DIR=str(tmp_path / "exports-here"),
        HILAPP_EXPORT_READERS="3",
    )

    def shell(env: dict[str, str]) -> list[str]:
        result = subprocess.run(
            [sys.executable, "manage.py", "shell", "-c", script],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0, result.stderr
        return result.stdout.splitlines()[-1].split()

    assert shell(clean) == [str(tmp_path / "exports-here"), "3"]
    default = {k: v for k, v in clean.items() if k != "HILAPP_EXPORT_READERS"}
    assert shell(default)[1] == "16"
    bad = subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=ROOT,
        env=dict(clean, HILAPP_EXPORT_READERS="0"),
        capture_output=True,
        text=True,
    )
    assert bad.returncode != 0 and "HILAPP_EXPORT_READERS" in bad.stderr
