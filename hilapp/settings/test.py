"""Test settings: base settings, fast hashers, a file-backed SQLite test database.

The SQLite test database is a file (not memory) so that real Celery worker processes started by
the tests see the same data as the test process.
"""

import os
from pathlib import Path

os.environ.setdefault("HILAPP_TESTING", "1")

from hilapp.settings.base import *  # noqa: F403
from hilapp.settings.base import DATABASES, VAR_DIR

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
MEDIA_ROOT = Path(os.environ.get("MEDIA_ROOT") or VAR_DIR / "test-media")
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / "test.sqlite3")}
