"""Retargeting audiences: lists of contacts an ad integration reads."""

import datetime as dt
import logging
from collections import defaultdict

from django.utils.text import slugify

from nurture.models import AudienceMember, Step, Touch

logger = logging.getLogger(__name__)


def audience_name(step: Step) -> str:
    """Return the audience a retargeting step adds contacts to.

    The step's name, slugified ("Pricing retargeting" becomes
    "pricing-retargeting"), so integrations can use it in a URL.
    """
    return slugify(step.name)[:100] or f"step-{step.pk}"


def add_to_audiences(touches: list[Touch], *, now: dt.datetime) -> int:
    """Put each touch's contact in its step's audience; return how many.

    Adding a member twice changes nothing; a member removed earlier joins
    again. Two queries per audience, not per contact.
    """
    by_audience: dict[str, dict[int, Touch]] = defaultdict(dict)
    for touch in touches:
        by_audience[audience_name(touch.step)][touch.contact_id] = touch

    for audience, members in by_audience.items():
        AudienceMember.objects.bulk_create(
            [
                AudienceMember(
                    audience=audience, contact_id=contact_id, touch=touch, added_at=now
                )
                for contact_id, touch in members.items()
            ],
            ignore_conflicts=True,
        )
        AudienceMember.objects.filter(
            audience=audience, contact_id__in=list(members), removed_at__isnull=False
        ).update(removed_at=None, added_at=now)
    return sum(len(members) for members in by_audience.values())


def audience_members(audience: str):
    """Return the current members of an audience, oldest first."""
    return (
        AudienceMember.objects.filter(audience=audience, removed_at__isnull=True)
        .select_related("contact")
        .order_by("added_at", "pk")
    )
