"""When a cadence may send: its window, weekdays and holidays, locally.

Each window is built on a local calendar day and converted to UTC before
any comparison, so a day on which the clocks change just has a shorter or
longer window. A local opening time that does not exist (skipped by a
spring-forward change) opens at the first moment after the gap; one that
happens twice (fall-back) opens the first time. A window whose end is
before its start runs past midnight and belongs to the day it opens on:
its weekday and holiday are that day's.
"""

import datetime as dt
import zoneinfo
from collections.abc import Iterator

from nurture.models import Cadence

from .zones import is_holiday

# How many days ahead to look for an open window before giving up.
_SEARCH_DAYS = 21


def next_send_time(
    cadence: Cadence,
    zone: zoneinfo.ZoneInfo,
    now: dt.datetime,
    *,
    holiday_country: str = "",
    at_local: dt.time | None = None,
) -> dt.datetime | None:
    """Return when the cadence may next send to a contact in ``zone``.

    Return None when ``now`` is inside the window. ``holiday_country`` (an
    ISO code, given only when the cadence skips holidays) closes the
    window on that country's public holidays. ``at_local`` asks for that
    local time of day in the next window when it falls inside it.
    When no window opens within three weeks (no weekday configured, say),
    return None: sending late beats never sending.
    """
    for opens, closes in windows(cadence, zone, now, holiday_country=holiday_country):
        if closes < now:
            continue
        if opens <= now:
            return None
        if at_local is not None:
            wanted = _at_local_in(opens, closes, at_local, zone)
            if wanted is not None:
                return wanted
        return opens
    return None


def windows(
    cadence: Cadence,
    zone: zoneinfo.ZoneInfo,
    around: dt.datetime,
    *,
    holiday_country: str = "",
) -> Iterator[tuple[dt.datetime, dt.datetime]]:
    """Yield the cadence's send windows from the day before ``around``, in UTC."""
    weekdays = set(cadence.weekdays)
    start, end = cadence.send_window_start, cadence.send_window_end
    crosses_midnight = end < start
    first_day = around.astimezone(zone).date() - dt.timedelta(days=1)
    for offset in range(_SEARCH_DAYS + 1):
        day = first_day + dt.timedelta(days=offset)
        if day.isoweekday() not in weekdays:
            continue
        if holiday_country and is_holiday(holiday_country, day):
            continue
        end_day = day + dt.timedelta(days=1) if crosses_midnight else day
        yield _utc(day, start, zone), _utc(end_day, end, zone)


def local_moment(day: dt.date, time: dt.time, zone: zoneinfo.ZoneInfo) -> dt.datetime:
    """Return the UTC moment of a local wall-clock time on a local day.

    A time skipped by a spring-forward change maps past the gap; a time
    that happens twice maps to its first occurrence.
    """
    return _utc(day, time, zone)


def _utc(day: dt.date, time: dt.time, zone: zoneinfo.ZoneInfo) -> dt.datetime:
    # fold=0 reads a skipped time with the offset before the change, which
    # lands after the gap, and a repeated time as its first occurrence.
    return dt.datetime.combine(day, time, tzinfo=zone).astimezone(dt.UTC)


def _at_local_in(opens, closes, at_local, zone) -> dt.datetime | None:
    day = opens.astimezone(zone).date()
    for candidate_day in (day, day + dt.timedelta(days=1)):
        moment = _utc(candidate_day, at_local, zone)
        if opens <= moment <= closes:
            return moment
    return None
