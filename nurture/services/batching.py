"""Helpers for the engine's batch work."""

import contextlib
import gc
import sqlite3

from django.db import connection


@contextlib.contextmanager
def collection_paused():
    """Pause the cyclic garbage collector, restoring its state afterwards.

    A batch keeps a few thousand objects alive at once, which would set off
    the cyclic collector many times over for nothing: the batch frees its
    objects by reference counting when it ends, and any cycles are collected
    as usual afterwards. Usable as a ``with`` block or a decorator.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def value_adapters():
    """Return (as_json, when): the connection's JSON and datetime adapters.

    For statements a batch writes itself, bypassing each field's value
    preparation. A batch stamps most rows with a handful of moments, so
    ``when`` adapts each datetime once and reuses it.
    """
    ops = connection.ops
    adapt, adapt_json = ops.adapt_datetimefield_value, ops.adapt_json_value
    adapted: dict = {}

    def when(value):
        if value not in adapted:
            adapted[value] = adapt(value)
        return adapted[value]

    def as_json(value):
        return adapt_json(value, None)

    return as_json, when


def max_query_params() -> int:
    """How many parameters one statement may carry on this connection."""
    if connection.vendor == "sqlite":
        connection.ensure_connection()
        raw = connection.connection
        # Python 3.11 reads the compiled limit (32,766 since SQLite 3.32).
        if hasattr(raw, "getlimit"):
            return raw.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
    return connection.features.max_query_params or 65535
