"""The embedded SQLite database is set up for a write-heavy job queue."""

import pytest
from django.db import connection

pytestmark = pytest.mark.django_db


def _pragma(name: str):
    with connection.cursor() as cursor:
        cursor.execute(f"PRAGMA {name}")
        return cursor.fetchone()[0]


@pytest.mark.skipif(connection.vendor != "sqlite", reason="SQLite settings")
def test_sqlite_connections_log_ahead_and_keep_pages_at_hand():
    """Readers never wait for the writer, and checkpoints come every 40 MB.

    Write-ahead logging lets the web server read while a worker writes;
    NORMAL sync is safe with it; a checkpoint every 10,000 pages copies a
    page rewritten by several scoring batches back once, not once each; a
    64 MB page cache and a mapped file keep scattered reads cheap.
    """
    connection.ensure_connection()

    assert _pragma("journal_mode") == "wal"
    assert _pragma("synchronous") == 1  # NORMAL
    assert _pragma("wal_autocheckpoint") == 10_000
    assert _pragma("busy_timeout") == 20_000
    assert _pragma("cache_size") == -65_536  # 64 MB of pages
    assert _pragma("mmap_size") == 268_435_456
