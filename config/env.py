"""Read deployment settings from environment variables."""

import os
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit


def env_str(name: str, default: str = "") -> str:
    """Return an environment variable, or the default when it is unset."""
    return os.environ.get(name, default)


def env_bool(name: str, default: bool = False) -> bool:
    """Read a yes/no environment variable (1, true, yes, on mean yes)."""
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_int(name: str, default: int) -> int:
    """Read an integer environment variable."""
    value = os.environ.get(name)
    return int(value) if value not in (None, "") else default


def parse_database_url(url: str, *, base_dir: Path) -> dict:
    """Turn a DATABASE_URL into a Django DATABASES entry.

    Understands ``sqlite:///relative.db``, ``sqlite:////absolute.db`` and
    ``postgres://user:password@host:port/name?option=value``.
    """
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme == "sqlite":
        path = unquote(parts.path[1:]) if parts.path.startswith("/") else parts.path
        name = Path(path) if Path(path).is_absolute() else base_dir / path
        return sqlite_database(name)
    if scheme in {"postgres", "postgresql", "pgsql"}:
        options = {key: values[-1] for key, values in parse_qs(parts.query).items()}
        return {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": unquote(parts.path.lstrip("/")),
            "USER": unquote(parts.username or ""),
            "PASSWORD": unquote(parts.password or ""),
            "HOST": parts.hostname or "",
            "PORT": str(parts.port or ""),
            # Keeping connections open multiplies django-q2 throughput.
            "CONN_MAX_AGE": env_int("DATABASE_CONN_MAX_AGE", 60),
            "CONN_HEALTH_CHECKS": True,
            "OPTIONS": options,
        }
    raise ValueError(f"DATABASE_URL: unsupported scheme {scheme!r}")


def sqlite_database(name: Path) -> dict:
    """Return a SQLite entry tuned for a write-heavy job queue."""
    return {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": str(name),
        "OPTIONS": {
            "timeout": 20,
            "transaction_mode": "IMMEDIATE",
            "init_command": (
                "PRAGMA journal_mode=WAL;"
                "PRAGMA synchronous=NORMAL;"
                "PRAGMA busy_timeout=20000;"
                # Checkpoint every 40 MB of log instead of every 4 MB: a
                # scoring batch rewrites thousands of scattered pages, and
                # a larger log copies a page rewritten by several batches
                # back into the database once.
                "PRAGMA wal_autocheckpoint=10000;"
                # Scoring reads and rewrites scattered contact and score
                # rows: keep 64 MB of pages per connection and map up to
                # 256 MB of the file instead of copying each page read.
                "PRAGMA cache_size=-65536;"
                "PRAGMA mmap_size=268435456;"
            ),
        },
    }
