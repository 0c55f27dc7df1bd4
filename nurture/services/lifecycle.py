"""Give leads that are not ready a way back: recycling and stale deals.

A lead rejected as "not now" is recycled: its stage history stays, its MQL
and SQL thresholds re-arm (crm.services.change_stage clears ``mql_at`` and
``sql_at``), and it joins the re-engagement cadence with the first step due
NURTURE_RECYCLE_AFTER_DAYS later. An open opportunity without activity for
NURTURE_STALE_OPPORTUNITY_DAYS is flagged stale, and its contact can be put
in the same cadence.
"""

import datetime as dt
import logging
from collections.abc import Iterable

from django.db import transaction
from django.db.models import Q
from django.db.models.functions import Coalesce

from crm.models import Contact, LifecycleStage, Opportunity
from nurture import conf
from nurture.models import Cadence, Enrollment

from .enrollment import enroll_contact, enroll_contacts
from .errors import NurtureError
from .schedule import step_due_at

logger = logging.getLogger(__name__)

RE_ENGAGEMENT_CADENCE = "Re-engagement"

OPEN_OPPORTUNITY_STAGES = (
    Opportunity.Stage.PROSPECTING,
    Opportunity.Stage.ENGAGING,
)


def re_engagement_cadence() -> Cadence | None:
    """Return the active re-engagement cadence, or None if there is none."""
    return Cadence.objects.filter(name=RE_ENGAGEMENT_CADENCE, is_active=True).first()


def recycle_contact(
    contact: Contact, *, now: dt.datetime, actor=None
) -> Enrollment | None:
    """Put a recycled lead into the re-engagement cadence after a pause.

    The first step falls due NURTURE_RECYCLE_AFTER_DAYS from now. Return
    the enrollment, or None (logged) when there is no cadence or the
    contact may not be enrolled; recycling itself never fails on that.
    """
    cadence = re_engagement_cadence()
    if cadence is None:
        logger.warning(
            "No active re-engagement cadence; recycled lead left out",
            extra={"contact_id": contact.pk},
        )
        return None
    delay = dt.timedelta(days=conf.get("NURTURE_RECYCLE_AFTER_DAYS"))
    try:
        with transaction.atomic():
            enrollment = enroll_contact(contact, cadence, now=now, actor=actor)
            enrollment.next_due_at = _first_due(cadence, now + delay)
            enrollment.save(update_fields=["next_due_at"])
    except NurtureError as error:
        logger.warning(
            "Recycled lead not re-enrolled: %s", error, extra={"contact_id": contact.pk}
        )
        return None
    return enrollment


def _first_due(cadence: Cadence, start: dt.datetime) -> dt.datetime:
    first = cadence.steps.order_by("position").first()
    return step_due_at(first, start)


def flag_stale_opportunities(*, now: dt.datetime, days: int | None = None) -> int:
    """Flag open opportunities with no activity for ``days`` days.

    Activity is ``last_activity_at``, else ``engaged_at``, else when the
    deal was created. One update flags them all; an opportunity with newer
    activity loses its flag in a second. Return how many were newly flagged.
    """
    days = days if days is not None else conf.get("NURTURE_STALE_OPPORTUNITY_DAYS")
    cutoff = now - dt.timedelta(days=days)
    activity = Coalesce("last_activity_at", "engaged_at", "created_at")
    open_deals = Opportunity.objects.filter(stage__in=OPEN_OPPORTUNITY_STAGES)

    flagged = (
        open_deals.alias(activity=activity)
        .filter(activity__lt=cutoff, stale_since__isnull=True)
        .update(stale_since=now)
    )
    Opportunity.objects.alias(activity=activity).filter(
        Q(activity__gte=cutoff) | ~Q(stage__in=OPEN_OPPORTUNITY_STAGES),
        stale_since__isnull=False,
    ).update(stale_since=None)
    if flagged:
        logger.info("Flagged %d stale opportunities", flagged)
    return flagged


def re_engage_opportunity_contacts(
    opportunity_ids: Iterable[int], *, now: dt.datetime
) -> int:
    """Enroll the contacts of these opportunities in the re-engagement cadence.

    Contacts who may not be enrolled are skipped (see enroll_contacts).
    Return how many were enrolled.
    """
    cadence = re_engagement_cadence()
    if cadence is None:
        raise NurtureError("there is no active re-engagement cadence", field="cadence")
    contact_ids = set(
        Opportunity.objects.filter(pk__in=list(opportunity_ids), contact__isnull=False)
        .exclude(contact__lifecycle_stage=LifecycleStage.DISQUALIFIED)
        .values_list("contact_id", flat=True)
    )
    return enroll_contacts(contact_ids, cadence, now=now)
