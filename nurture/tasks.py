"""django-q2 entry points: each takes ids or nothing and calls one service."""

import logging
import time

from django.utils import timezone

from nurture import conf
from nurture.services.dispatch import DispatchResult, dispatch_due_touches
from nurture.services.handoffs import enforce_handoff_slas, hand_off_waiting_leads
from nurture.services.lifecycle import flag_stale_opportunities
from nurture.services.out_of_office import resume_returned_enrollments
from nurture.services.scoring import (
    decay_scores,
    rescore_new_events,
    run_rescore_batch,
)

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


# Rescoring shares the dispatcher's headroom under the task timeout.
RESCORE_TIME_BUDGET_SECONDS = 50


def rescore_contacts_task() -> int:
    """Score new events batch after batch until a short batch or time is up."""
    batch_size = conf.get("NURTURE_RESCORE_BATCH_SIZE")
    started = time.monotonic()
    scored = 0
    while True:
        count = rescore_new_events(now=timezone.now(), batch_size=batch_size)
        scored += count
        if count < batch_size:
            break
        if time.monotonic() - started >= RESCORE_TIME_BUDGET_SECONDS:
            break
    return scored


def rescore_model_task(job_id: int) -> bool:
    """Work through a rescore job's batches; queue a follow-up if time runs out.

    Return True when the job has more contacts left for the follow-up.
    """
    from django_q.tasks import async_task

    started = time.monotonic()
    while run_rescore_batch(job_id, now=timezone.now()):
        if time.monotonic() - started >= RESCORE_TIME_BUDGET_SECONDS:
            async_task("nurture.tasks.rescore_model_task", job_id)
            return True
    return False


def decay_scores_task() -> int:
    """Persist decayed intent for scores and accounts not written for a while."""
    return decay_scores(now=timezone.now())


def flag_stale_opportunities_task() -> int:
    """Flag open opportunities that have gone quiet for too long."""
    return flag_stale_opportunities(now=timezone.now())


def enforce_handoff_slas_task() -> dict[str, int]:
    """Flag handoffs whose SLA has passed and run their due escalation steps."""
    return enforce_handoff_slas(now=timezone.now()).as_dict()


def deliver_webhooks_task() -> dict[str, int]:
    """POST due webhook deliveries, one batch after another until a short one."""
    from nurture.services.webhooks import deliver_webhooks

    batch_size = conf.get("NURTURE_WEBHOOK_BATCH_SIZE")
    started = time.monotonic()
    totals: dict[str, int] = {}
    while True:
        result = deliver_webhooks(now=timezone.now(), batch_size=batch_size)
        for name, count in result.as_dict().items():
            totals[name] = totals.get(name, 0) + count
        if result.claimed < batch_size:
            break
        if time.monotonic() - started >= DISPATCH_TIME_BUDGET_SECONDS:
            break
    return totals


def hand_off_waiting_leads_task() -> int:
    """Hand off MQLs that were waiting for a rep with free capacity."""
    return hand_off_waiting_leads(now=timezone.now())


def resume_returned_enrollments_task() -> int:
    """Resume enrollments paused for an out-of-office whose contact is back."""
    return resume_returned_enrollments(now=timezone.now())
