"""Run calls at the same moment in threads, as concurrent workers would."""

import threading
from collections.abc import Callable

from django.db import connections


def run_at_once(*calls: Callable) -> list:
    """Run each call in a thread of its own, all released together.

    Each thread uses its own database connection and closes it when done.
    Return the calls' results in the order given; fail on any error.
    """
    barrier = threading.Barrier(len(calls))
    results: list = [None] * len(calls)
    errors: list = []

    def run(index: int, call: Callable) -> None:
        try:
            barrier.wait()
            results[index] = call()
        except Exception as error:  # surfaced by the assertion below
            errors.append(error)
        finally:
            connections.close_all()

    threads = [
        threading.Thread(target=run, args=(index, call))
        for index, call in enumerate(calls)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == [], errors
    return results
