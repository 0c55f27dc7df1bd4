"""Helpers shared by the nurture admin modules."""

import datetime as dt

from django.contrib import messages
from django.utils import timezone

from crm.services import StageTransitionError

from ..services.errors import NurtureError

# Refusals a service may raise; each becomes a message, not a server error.
REFUSALS = (NurtureError, StageTransitionError)

# Above this many contacts the enroll action enrolls in bulk and reports
# totals instead of a reason per contact.
BULK_ENROLL_FROM = 500


def apply_to_each(modeladmin, request, queryset, change, done: str) -> int:
    """Run ``change(record, now)`` on every record, reporting each refusal.

    ``done`` is the success message with a ``%d`` for the count.
    """
    now = timezone.now()
    changed = 0
    for record in queryset:
        try:
            change(record, now)
        except REFUSALS as error:
            modeladmin.message_user(
                request, f"{record}: {error}", level=messages.WARNING
            )
        else:
            changed += 1

    if changed:
        modeladmin.message_user(request, done % changed, level=messages.SUCCESS)
    return changed


def time_left(deadline: dt.datetime, now: dt.datetime) -> str:
    """Describe the time to a deadline as "2h 05m left" or "1h 10m overdue"."""
    delta = deadline - now
    minutes = int(abs(delta.total_seconds()) // 60)
    text = f"{minutes // 60}h {minutes % 60:02d}m"
    return f"{text} left" if delta.total_seconds() >= 0 else f"{text} overdue"


# Cadences -------------------------------------------------------------------
