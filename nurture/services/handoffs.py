"""Hand qualified leads to reps and record what the reps decide."""

import datetime as dt
import logging

from django.db import transaction

from crm.models import LifecycleStage
from crm.services import change_stage
from nurture.models import Handoff

from .errors import NurtureError

logger = logging.getLogger(__name__)


class RejectReason:
    NOT_NOW = "not_now"
    BAD_FIT = "bad_fit"
    CHOICES = [(NOT_NOW, "Not now (recycle)"), (BAD_FIT, "Bad fit (disqualify)")]


def accept_handoff(handoff: Handoff, *, now: dt.datetime, actor=None) -> Handoff:
    """Accept a handoff: the contact becomes sales qualified."""
    with transaction.atomic():
        locked = _lock_open(handoff)
        locked.status = Handoff.Status.ACCEPTED
        locked.accepted_at = now
        locked.save(update_fields=["status", "accepted_at"])
        contact = locked.contact
        if contact.lifecycle_stage != LifecycleStage.SQL:
            change_stage(
                contact,
                LifecycleStage.SQL,
                now=now,
                actor=actor,
                reason="handoff accepted",
            )
    logger.info("Handoff accepted", extra={"handoff_id": locked.pk})
    return locked


def reject_handoff(
    handoff: Handoff,
    *,
    reason: str,
    now: dt.datetime,
    note: str = "",
    actor=None,
) -> Handoff:
    """Reject a handoff: recycle the lead ("not now") or disqualify it."""
    stages = {
        RejectReason.NOT_NOW: LifecycleStage.RECYCLED,
        RejectReason.BAD_FIT: LifecycleStage.DISQUALIFIED,
    }
    if reason not in stages:
        raise NurtureError(f"reason must be one of {', '.join(stages)}", field="reason")

    with transaction.atomic():
        locked = _lock_open(handoff)
        locked.status = Handoff.Status.REJECTED
        locked.rejected_at = now
        locked.rejection_reason = f"{reason}: {note}".strip(": ")[:255]
        locked.save(update_fields=["status", "rejected_at", "rejection_reason"])
        change_stage(
            locked.contact,
            stages[reason],
            now=now,
            actor=actor,
            reason=f"handoff rejected ({reason})",
        )
    logger.info("Handoff rejected", extra={"handoff_id": locked.pk})
    return locked


def _lock_open(handoff: Handoff) -> Handoff:
    locked = (
        Handoff.objects.select_for_update()
        .select_related("contact")
        .filter(pk=handoff.pk, status__in=Handoff.OPEN_STATUSES)
        .first()
    )
    if locked is None:
        raise NurtureError("the handoff has already been decided", field="status")
    return locked
