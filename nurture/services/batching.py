"""Helpers for the engine's batch work."""

import contextlib
import gc


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
