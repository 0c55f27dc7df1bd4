"""Business-hours arithmetic across zones, clock changes, holidays, absence."""

import datetime as dt

import pytest

from nurture.services.business_hours import (
    WorkingCalendar,
    add_business_hours,
    business_hours_between,
    calendar_for,
    is_working_day,
    next_working_moment,
)
from tests.factories import RepFactory

EVERY_DAY = frozenset(range(7))


def utc(*args) -> dt.datetime:
    return dt.datetime(*args, tzinfo=dt.UTC)


LONDON = WorkingCalendar(time_zone="Europe/London")
KOLKATA = WorkingCalendar(time_zone="Asia/Kolkata")
NEW_YORK = WorkingCalendar(time_zone="America/New_York")


def test_hours_inside_one_day_add_on_the_wall_clock():
    """Four hours from 10:00 on a London Monday in winter end at 14:00 UTC."""
    assert add_business_hours(LONDON, utc(2025, 3, 3, 10), 4) == utc(2025, 3, 3, 14)


def test_a_friday_evening_start_rolls_to_monday():
    """Work left at Friday's close continues Monday morning."""
    friday_4pm = utc(2025, 3, 7, 16)

    assert add_business_hours(LONDON, friday_4pm, 4) == utc(2025, 3, 10, 12)
    assert next_working_moment(LONDON, utc(2025, 3, 7, 18)) == utc(2025, 3, 10, 9)
    assert business_hours_between(LONDON, friday_4pm, utc(2025, 3, 10, 12)) == 4.0


def test_london_summer_time_shifts_the_window_by_an_hour():
    """In British Summer Time 09:00 London is 08:00 UTC."""
    assert next_working_moment(LONDON, utc(2025, 7, 1, 6)) == utc(2025, 7, 1, 8)
    assert add_business_hours(LONDON, utc(2025, 7, 1, 6), 8) == utc(2025, 7, 1, 16)


def test_kolkata_half_hour_offset():
    """09:00-17:00 IST is 03:30-11:30 UTC; 4 hours from 15:30 end 11:30 next day."""
    tuesday_1530_ist = utc(2025, 3, 4, 10)

    assert add_business_hours(KOLKATA, tuesday_1530_ist, 4) == utc(2025, 3, 5, 6)
    assert next_working_moment(KOLKATA, utc(2025, 3, 4, 0)) == utc(2025, 3, 4, 3, 30)
    assert business_hours_between(
        KOLKATA, utc(2025, 3, 4, 0), utc(2025, 3, 5, 0)
    ) == pytest.approx(8.0)


def test_new_york_spring_forward_weekend():
    """Friday 15:00 EST plus 4 hours is Monday 11:00 EDT (15:00 UTC)."""
    friday_3pm_est = utc(2025, 3, 7, 20)

    assert add_business_hours(NEW_YORK, friday_3pm_est, 4) == utc(2025, 3, 10, 15)
    assert business_hours_between(
        NEW_YORK, friday_3pm_est, utc(2025, 3, 10, 15)
    ) == pytest.approx(4.0)


def test_new_york_fall_back_weekend():
    """Friday 16:00 EDT plus 2 hours is Monday 10:00 EST (15:00 UTC)."""
    friday_4pm_edt = utc(2025, 10, 31, 20)

    assert add_business_hours(NEW_YORK, friday_4pm_edt, 2) == utc(2025, 11, 3, 15)


def test_a_day_with_the_clocks_going_forward_has_23_hours():
    """A round-the-clock calendar works 23 hours on spring-forward Sunday."""
    calendar = WorkingCalendar(
        time_zone="America/New_York",
        workday_start=dt.time(0),
        workday_end=dt.time(0),
        weekdays=EVERY_DAY,
    )
    sunday_midnight_est = utc(2025, 3, 9, 5)
    monday_midnight_edt = utc(2025, 3, 10, 4)

    assert business_hours_between(
        calendar, sunday_midnight_est, monday_midnight_edt
    ) == pytest.approx(23.0)
    assert add_business_hours(calendar, sunday_midnight_est, 23) == (
        monday_midnight_edt
    )


def test_a_day_with_the_clocks_going_back_has_25_hours():
    """A round-the-clock calendar works 25 hours on fall-back Sunday."""
    calendar = WorkingCalendar(
        time_zone="America/New_York",
        workday_start=dt.time(0),
        workday_end=dt.time(0),
        weekdays=EVERY_DAY,
    )

    assert business_hours_between(
        calendar, utc(2025, 11, 2, 4), utc(2025, 11, 3, 5)
    ) == pytest.approx(25.0)


def test_a_workday_spanning_the_jump_counts_real_hours():
    """A 00:30-04:30 shift on spring-forward night lasts three real hours."""
    calendar = WorkingCalendar(
        time_zone="America/New_York",
        workday_start=dt.time(0, 30),
        workday_end=dt.time(4, 30),
        weekdays=EVERY_DAY,
    )
    opens = utc(2025, 3, 9, 5, 30)  # 00:30 EST
    closes = utc(2025, 3, 9, 8, 30)  # 04:30 EDT

    assert business_hours_between(calendar, opens, closes) == pytest.approx(3.0)
    assert add_business_hours(calendar, opens, 3) == closes
    # The fourth hour is worked the next night, which starts 00:30 EDT.
    assert add_business_hours(calendar, opens, 4) == utc(2025, 3, 10, 5, 30)


def test_public_holidays_are_skipped():
    """A US rep's Independence Day (a Friday in 2025) is not worked."""
    calendar = WorkingCalendar(time_zone="America/New_York", holiday_country="US")
    thursday_3pm_edt = utc(2025, 7, 3, 19)

    assert not is_working_day(calendar, dt.date(2025, 7, 4))
    assert add_business_hours(calendar, thursday_3pm_edt, 4) == utc(2025, 7, 7, 15)
    # Without the holiday calendar the same hours end on Friday.
    assert add_business_hours(NEW_YORK, thursday_3pm_edt, 4) == utc(2025, 7, 4, 15)


def test_christmas_in_london_skips_two_days():
    """Christmas Eve afternoon plus 8 hours in the UK runs into the 29th."""
    calendar = WorkingCalendar(time_zone="Europe/London", holiday_country="GB")

    due = add_business_hours(calendar, utc(2025, 12, 24, 13), 8)

    assert due == utc(2025, 12, 29, 13)


def test_out_of_office_days_are_skipped():
    """An absent Monday and Tuesday push Friday's remaining work to Wednesday."""
    calendar = WorkingCalendar(
        time_zone="Europe/London",
        out_of_office_from=dt.date(2025, 3, 10),
        out_of_office_until=dt.date(2025, 3, 11),
    )

    assert add_business_hours(calendar, utc(2025, 3, 7, 16), 4) == utc(2025, 3, 12, 12)
    assert next_working_moment(calendar, utc(2025, 3, 10, 10)) == utc(2025, 3, 12, 9)


def test_inside_hours_next_working_moment_is_now():
    """A moment inside working hours is its own next working moment."""
    now = utc(2025, 3, 3, 11, 15)

    assert next_working_moment(LONDON, now) == now


def test_zero_hours_and_reversed_ranges():
    """Zero hours changes nothing; a reversed range counts negative hours."""
    friday_night = utc(2025, 3, 7, 22)

    assert add_business_hours(LONDON, friday_night, 0) == friday_night
    assert business_hours_between(
        LONDON, utc(2025, 3, 3, 14), utc(2025, 3, 3, 12)
    ) == pytest.approx(-2.0)
    with pytest.raises(ValueError):
        add_business_hours(LONDON, friday_night, -1)


def test_a_calendar_without_working_days_says_so():
    """A calendar with no weekdays raises instead of looping forever."""
    calendar = WorkingCalendar(weekdays=frozenset())

    with pytest.raises(ValueError):
        next_working_moment(calendar, utc(2025, 3, 3))


@pytest.mark.django_db
def test_calendar_for_reads_the_rep_profile():
    """A rep's zone, hours, holiday country and absence shape the calendar."""
    rep = RepFactory(
        time_zone="Asia/Kolkata",
        workday_start=dt.time(10),
        workday_end=dt.time(18, 30),
        holiday_country="in",
        out_of_office_from=dt.date(2025, 3, 3),
        out_of_office_until=dt.date(2025, 3, 4),
    )

    calendar = calendar_for(rep)

    assert calendar == WorkingCalendar(
        time_zone="Asia/Kolkata",
        workday_start=dt.time(10),
        workday_end=dt.time(18, 30),
        holiday_country="IN",
        out_of_office_from=dt.date(2025, 3, 3),
        out_of_office_until=dt.date(2025, 3, 4),
    )
    assert calendar_for(None) == WorkingCalendar()


@pytest.mark.django_db
def test_calendar_for_falls_back_to_utc_for_an_unknown_zone():
    """A mistyped zone name yields a UTC calendar rather than an error."""
    rep = RepFactory(time_zone="Mars/Olympus_Mons")

    assert calendar_for(rep).time_zone == "UTC"
