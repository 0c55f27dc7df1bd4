"""Dispatch pauses the cyclic garbage collector only for the batch."""

import gc

import pytest

from nurture.services.batching import collection_paused


def test_collection_is_paused_inside_and_restored_after():
    assert gc.isenabled()

    with collection_paused():
        assert not gc.isenabled()

    assert gc.isenabled()


def test_collection_is_restored_when_the_batch_fails():
    with pytest.raises(RuntimeError), collection_paused():
        raise RuntimeError("send failed")

    assert gc.isenabled()


def test_a_caller_that_disabled_collection_keeps_it_disabled():
    gc.disable()
    try:
        with collection_paused():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()
