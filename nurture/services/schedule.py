"""Calendar arithmetic for step waits.

Days are counted on the contact's wall clock: "two days" after Friday 10:00
is Sunday 10:00 local time even across a daylight-saving change. Business
days skip Saturdays, Sundays and, when given a country, its public holidays.
"""

import datetime as dt
import zoneinfo

from nurture.models import Step

from .send_window import local_moment
from .zones import is_holiday

UTC = zoneinfo.ZoneInfo("UTC")


def add_wait(
    start: dt.datetime,
    amount: int,
    unit: str,
    *,
    zone: zoneinfo.ZoneInfo | None = None,
    holiday_country: str = "",
) -> dt.datetime:
    """Return the moment ``amount`` hours, days or business days after start."""
    if unit == Step.WaitUnit.HOURS:
        return start + dt.timedelta(hours=amount)

    local = start.astimezone(zone or UTC)
    day = local.date()
    if unit == Step.WaitUnit.DAYS:
        day += dt.timedelta(days=amount)
    else:
        remaining = amount
        while remaining > 0:
            day += dt.timedelta(days=1)
            if day.isoweekday() <= 5 and not is_holiday(holiday_country, day):
                remaining -= 1
    return local_moment(day, local.time(), zone or UTC)


def step_due_at(
    step: Step,
    after: dt.datetime,
    *,
    zone: zoneinfo.ZoneInfo | None = None,
    holiday_country: str = "",
) -> dt.datetime:
    """Return when ``step`` falls due if the previous one ran at ``after``.

    A step with ``send_at_local`` falls due at that time of day in ``zone``
    on the day its wait ends, or the next day if that time has passed.
    ``holiday_country`` is the contact's ISO country code when the cadence
    skips holidays, else "".
    """
    due = add_wait(
        after,
        step.wait_amount,
        step.wait_unit,
        zone=zone,
        holiday_country=holiday_country,
    )
    if step.send_at_local is None:
        return due
    zone = zone or UTC
    day = due.astimezone(zone).date()
    at = local_moment(day, step.send_at_local, zone)
    if at < due:
        at = local_moment(day + dt.timedelta(days=1), step.send_at_local, zone)
    return at
