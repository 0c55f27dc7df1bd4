"""Business-hours arithmetic on a rep's working calendar.

Every function is pure: it takes a ``WorkingCalendar`` and aware datetimes
and returns aware UTC datetimes or hour counts. Working windows are built
per local calendar day and converted to UTC, so a day on which the clocks
change simply has a shorter or longer window, and an hour counts as it
passes on the wall clock of the world, not on the rep's.
"""

import datetime as dt
import functools
import logging
import zoneinfo
from collections.abc import Iterator
from dataclasses import dataclass, field

import holidays

logger = logging.getLogger(__name__)

MONDAY_TO_FRIDAY = frozenset(range(5))

# How far ahead to look for a working day before deciding there is none.
# Covers a long out-of-office spell plus a year of holidays and weekends.
_SEARCH_DAYS = 800


@dataclass(frozen=True)
class WorkingCalendar:
    """When someone works: zone, daily hours, weekdays, holidays, absence.

    ``weekdays`` holds ``date.weekday()`` numbers (Monday is 0). A
    ``workday_end`` at or before ``workday_start`` means the shift ends the
    next day. The out-of-office dates are inclusive.
    """

    time_zone: str = "UTC"
    workday_start: dt.time = dt.time(9)
    workday_end: dt.time = dt.time(17)
    weekdays: frozenset[int] = field(default=MONDAY_TO_FRIDAY)
    holiday_country: str = ""
    out_of_office_from: dt.date | None = None
    out_of_office_until: dt.date | None = None

    @property
    def zone(self) -> zoneinfo.ZoneInfo:
        return zoneinfo.ZoneInfo(self.time_zone)


def calendar_for(rep, *, weekdays: frozenset[int] = MONDAY_TO_FRIDAY):
    """Return the working calendar of a ``crm.Rep`` (or the default for None).

    An unknown time zone name falls back to UTC so that one bad profile
    cannot stop deadlines from being computed.
    """
    if rep is None:
        return WorkingCalendar(weekdays=weekdays)

    zone_name = rep.time_zone or "UTC"
    try:
        zoneinfo.ZoneInfo(zone_name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        logger.warning(
            "Rep has an unknown time zone; using UTC", extra={"rep_id": rep.pk}
        )
        zone_name = "UTC"
    return WorkingCalendar(
        time_zone=zone_name,
        workday_start=_as_time(rep.workday_start),
        workday_end=_as_time(rep.workday_end),
        weekdays=weekdays,
        holiday_country=(rep.holiday_country or "").upper(),
        out_of_office_from=rep.out_of_office_from,
        out_of_office_until=rep.out_of_office_until,
    )


def is_working_day(calendar: WorkingCalendar, day: dt.date) -> bool:
    """Return whether ``day`` (a local date) is one the calendar works."""
    if day.weekday() not in calendar.weekdays:
        return False
    if day in public_holidays(calendar.holiday_country, day.year):
        return False
    absent_from = calendar.out_of_office_from
    absent_until = calendar.out_of_office_until
    if absent_from or absent_until:
        after_start = absent_from is None or day >= absent_from
        before_end = absent_until is None or day <= absent_until
        if after_start and before_end:
            return False
    return True


@functools.lru_cache(maxsize=256)
def public_holidays(country: str, year: int) -> frozenset[dt.date]:
    """Return the public holidays of ``country`` in ``year``, cached."""
    if not country:
        return frozenset()
    try:
        return frozenset(holidays.country_holidays(country, years=year))
    except NotImplementedError:
        logger.warning("No holiday calendar for country %s", country)
        return frozenset()


def next_working_moment(calendar: WorkingCalendar, after: dt.datetime) -> dt.datetime:
    """Return ``after`` if it falls in working hours, else when work resumes."""
    for opens, closes in _windows(calendar, after):
        if closes > after:
            return max(opens, after)
    raise ValueError("The calendar has no working time ahead.")


def add_business_hours(
    calendar: WorkingCalendar, start: dt.datetime, hours: float
) -> dt.datetime:
    """Return the moment ``hours`` working hours after ``start``.

    Zero hours returns ``start`` itself. A deadline that uses up a day's
    window exactly lands on that day's closing time, not the next opening.
    """
    if hours < 0:
        raise ValueError("hours must not be negative")
    start = start.astimezone(dt.UTC)
    if hours == 0:
        return start

    remaining = dt.timedelta(hours=hours)
    for opens, closes in _windows(calendar, start):
        if closes <= start:
            continue
        opens = max(opens, start)
        available = closes - opens
        if remaining <= available:
            return opens + remaining
        remaining -= available
    raise ValueError("The calendar has no working time ahead.")


def business_hours_between(
    calendar: WorkingCalendar, start: dt.datetime, end: dt.datetime
) -> float:
    """Return the working hours from ``start`` to ``end``; negative if reversed."""
    if end < start:
        return -business_hours_between(calendar, end, start)

    total = dt.timedelta()
    for opens, closes in _windows(calendar, start):
        if opens >= end:
            break
        overlap = min(closes, end) - max(opens, start)
        if overlap > dt.timedelta():
            total += overlap
    return total.total_seconds() / 3600


def _windows(
    calendar: WorkingCalendar, since: dt.datetime
) -> Iterator[tuple[dt.datetime, dt.datetime]]:
    """Yield the UTC (opens, closes) of working days from ``since``'s day on.

    Starts a day early so that a shift running past midnight is not missed.
    """
    zone = calendar.zone
    first_day = since.astimezone(zone).date() - dt.timedelta(days=1)
    overnight = calendar.workday_end <= calendar.workday_start
    for offset in range(_SEARCH_DAYS):
        day = first_day + dt.timedelta(days=offset)
        if not is_working_day(calendar, day):
            continue
        end_day = day + dt.timedelta(days=1) if overnight else day
        opens = dt.datetime.combine(day, calendar.workday_start, tzinfo=zone)
        closes = dt.datetime.combine(end_day, calendar.workday_end, tzinfo=zone)
        # Arithmetic on aware datetimes of one zone ignores DST, so convert
        # to UTC first: a window across a clock change keeps its real length.
        yield opens.astimezone(dt.UTC), closes.astimezone(dt.UTC)


def _as_time(value) -> dt.time:
    if isinstance(value, str):
        return dt.time.fromisoformat(value)
    return value
