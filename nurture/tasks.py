"""django-q2 entry points: each takes ids or nothing and calls one service."""

import logging
import time

from django.utils import timezone

from nurture import conf
from nurture.services.dispatch import DispatchResult, dispatch_due_touches

logger = logging.getLogger(__name__)

# Leave headroom under the cluster's task timeout for the last batch.
DISPATCH_TIME_BUDGET_SECONDS = 50


def dispatch_due_touches_task() -> dict[str, int]:
    """Dispatch due touches batch after batch until none are left or time is up."""
    batch_size = conf.get("NURTURE_DISPATCH_BATCH_SIZE")
    started = time.monotonic()
    totals = DispatchResult()
    while True:
        result = dispatch_due_touches(now=timezone.now(), batch_size=batch_size)
        for name, count in result.as_dict().items():
            setattr(totals, name, getattr(totals, name) + count)
        if result.claimed < batch_size:
            break
        if time.monotonic() - started >= DISPATCH_TIME_BUDGET_SECONDS:
            break
    return totals.as_dict()
