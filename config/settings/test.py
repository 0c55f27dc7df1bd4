"""Tests: fast hashing, in-memory mail; the database still comes from DATABASE_URL."""

from .base import *  # noqa: F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
LOGGING["loggers"]["nurture"]["level"] = "WARNING"  # noqa: F405
LOGGING["loggers"]["crm"]["level"] = "WARNING"  # noqa: F405
