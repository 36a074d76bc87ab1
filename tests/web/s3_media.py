"""Media storage for tests exactly as hilapp/settings/base.py builds it from an environment."""

from __future__ import annotations

import runpy
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]


def storages_from_env(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """STORAGES as the settings module computes it with ``env`` added to the environment."""
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    storages: dict[str, Any] = runpy.run_path(str(ROOT / "hilapp/settings/base.py"))["STORAGES"]
    return storages


def s3_default(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """The default (media) storage for a bucket's environment (``local_s3.bucket()``)."""
    default: dict[str, Any] = storages_from_env(env, monkeypatch)["default"]
    return default
