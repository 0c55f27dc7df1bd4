"""Send windows read on the contact's wall clock, across DST and midnight."""

import datetime as dt
import zoneinfo

import pytest

from nurture.services.send_window import next_send_time
from tests.factories import CadenceFactory

pytestmark = pytest.mark.django_db

NEW_YORK = zoneinfo.ZoneInfo("America/New_York")
LONDON = zoneinfo.ZoneInfo("Europe/London")
KOLKATA = zoneinfo.ZoneInfo("Asia/Kolkata")
ADELAIDE = zoneinfo.ZoneInfo("Australia/Adelaide")


def utc(*args) -> dt.datetime:
    return dt.datetime(*args, tzinfo=dt.UTC)


def window(start, end, weekdays=(1, 2, 3, 4, 5, 6, 7), **fields):
    return CadenceFactory(
        send_window_start=start,
        send_window_end=end,
        send_weekdays=list(weekdays),
        **fields,
    )


@pytest.mark.parametrize(
    ("zone", "night", "opening"),
    [
        # New York springs forward on Sunday 9 March 2025: 09:00 is EDT (-4)
        (NEW_YORK, utc(2025, 3, 9, 5), utc(2025, 3, 9, 13)),
        # and falls back on Sunday 2 November 2025: 09:00 is EST (-5)
        (NEW_YORK, utc(2025, 11, 2, 5), utc(2025, 11, 2, 14)),
        # London springs forward on 30 March and falls back on 26 October
        (LONDON, utc(2025, 3, 30, 0, 30), utc(2025, 3, 30, 8)),
        (LONDON, utc(2025, 10, 26, 0, 30), utc(2025, 10, 26, 9)),
        # Kolkata is UTC+05:30 all year
        (KOLKATA, utc(2025, 3, 3, 0), utc(2025, 3, 3, 3, 30)),
        # Adelaide is +09:30 in winter and +10:30 from 5 October 2025
        (ADELAIDE, utc(2025, 7, 1, 20), utc(2025, 7, 1, 23, 30)),
        (ADELAIDE, utc(2025, 10, 5, 20), utc(2025, 10, 5, 22, 30)),
    ],
)
def test_the_window_opens_at_local_nine_whatever_the_offset(zone, night, opening):
    """09:00 local is found in UTC correctly on DST days and half-hour zones."""
    cadence = window(dt.time(9), dt.time(17))

    assert next_send_time(cadence, zone, night) == opening
    assert next_send_time(cadence, zone, opening) is None


def test_a_spring_forward_gap_opens_right_after_the_gap():
    """A 02:30 opening on the day 02:30 does not exist opens at 03:30 EDT."""
    cadence = window(dt.time(2, 30), dt.time(5))

    opening = next_send_time(cadence, NEW_YORK, utc(2025, 3, 9, 5))

    assert opening == utc(2025, 3, 9, 7, 30)
    assert opening.astimezone(NEW_YORK).time() == dt.time(3, 30)


def test_a_fall_back_day_has_a_window_an_hour_longer():
    """On fall-back night an 00:00-03:00 window lasts four real hours."""
    cadence = window(dt.time(0), dt.time(3))

    # 01:30 EST, the second 01:30 of the night, is still inside
    assert next_send_time(cadence, NEW_YORK, utc(2025, 11, 2, 6, 30)) is None
    # 03:00 EST closes it: 08:00 UTC
    assert next_send_time(cadence, NEW_YORK, utc(2025, 11, 2, 8, 1)) == utc(
        2025, 11, 3, 5
    )


def test_a_window_across_midnight_belongs_to_the_day_it_opens():
    """A Friday 20:00-02:00 window still sends at Saturday 01:00, not 03:00."""
    cadence = window(dt.time(20), dt.time(2), weekdays=[5])  # Fridays only

    saturday_one = utc(2025, 3, 8, 1)
    saturday_three = utc(2025, 3, 8, 3)

    assert next_send_time(cadence, dt.UTC, saturday_one) is None
    assert next_send_time(cadence, dt.UTC, saturday_three) == utc(2025, 3, 14, 20)


def test_holidays_close_the_window_only_when_the_cadence_skips_them():
    """Republic Day (Sunday 26 Jan 2025) waits for Monday when asked to."""
    cadence = window(dt.time(9), dt.time(17), skip_holidays=True)
    republic_day = utc(2025, 1, 26, 5)

    assert next_send_time(cadence, KOLKATA, republic_day, holiday_country="IN") == (
        utc(2025, 1, 27, 3, 30)
    )
    assert next_send_time(cadence, KOLKATA, republic_day) is None


def test_a_local_send_time_is_kept_when_the_step_waits_for_the_window():
    """An "at 10:30" step deferred past the weekend goes at Monday 10:30."""
    cadence = window(dt.time(9), dt.time(17), weekdays=[1, 2, 3, 4, 5])
    saturday = utc(2025, 3, 8, 10)

    assert next_send_time(cadence, LONDON, saturday, at_local=dt.time(10, 30)) == utc(
        2025, 3, 10, 10, 30
    )
