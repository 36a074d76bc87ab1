"""Test settings: base settings, fast hashers, a file-backed SQLite test database.

The SQLite test database is a file (not memory) so that real Celery worker processes started by
the tests see the same data as the test process.
"""

import os
from pathlib import Path

os.environ.setdefault("HILAPP_TESTING", "1")
# The test client and live servers speak plain HTTP (tests of the HTTPS defaults run the base
# settings in a subprocess).
os.environ.setdefault("HILAPP_HTTPS", "0")

from hilapp.settings.base import *  # noqa: F403
from hilapp.settings.base import DATABASES, STORAGES, VAR_DIR

# Templates name static files without a prior ``collectstatic``: no manifest in tests (the web
# tier test runs gunicorn on the base settings, manifest included).
STORAGES = {
    **STORAGES,
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
# WhiteNoise finds static files in the apps per request, as in DEBUG (no STATIC_ROOT needed).
WHITENOISE_AUTOREFRESH = True
WHITENOISE_USE_FINDERS = True

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
MEDIA_ROOT = Path(os.environ.get("MEDIA_ROOT") or VAR_DIR / "test-media")
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / "test.sqlite3")}
