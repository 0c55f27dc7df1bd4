"""Tests: fast hashing, in-memory mail; the database still comes from DATABASE_URL."""

import os

from .base import *  # noqa: F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
LOGGING["loggers"]["nurture"]["level"] = "WARNING"  # noqa: F405
LOGGING["loggers"]["crm"]["level"] = "WARNING"  # noqa: F405

# A file, not memory, so a real django-q2 cluster in another process sees the
# same test database. The suffix lets several test runs share one machine.
_suffix = os.environ.get("NURTURE_TEST_DB_SUFFIX", "")
_db = DATABASES["default"]  # noqa: F405
if _db["ENGINE"].endswith("sqlite3"):
    _db["TEST"] = {"NAME": str(VAR_DIR / f"test{_suffix}.sqlite3")}  # noqa: F405
else:
    _db["TEST"] = {"NAME": f"test_{_db['NAME']}{_suffix}"}
