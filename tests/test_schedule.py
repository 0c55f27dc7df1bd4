"""Step waits: hours, calendar days, business days and an "at HH:MM local"."""

import datetime as dt
import zoneinfo

import pytest

from nurture.models import Step
from nurture.services.schedule import add_wait, step_due_at
from tests.factories import StepFactory

pytestmark = pytest.mark.django_db

KOLKATA = zoneinfo.ZoneInfo("Asia/Kolkata")
NEW_YORK = zoneinfo.ZoneInfo("America/New_York")
# Friday 24 January 2025, 10:00 in Kolkata; Monday 27th follows Republic Day.
FRIDAY = dt.datetime(2025, 1, 24, 4, 30, tzinfo=dt.UTC)


def test_business_days_skip_the_weekend():
    """One business day after a Friday is the Monday, same local time."""
    monday = add_wait(FRIDAY, 1, Step.WaitUnit.BUSINESS_DAYS, zone=KOLKATA)

    assert monday == dt.datetime(2025, 1, 27, 4, 30, tzinfo=dt.UTC)


def test_business_days_skip_the_contacts_holidays_when_given_a_country():
    """A business day after the eve of Independence Day is the Monday."""
    # Thursday 14 August 2025, 10:00 IST; Friday 15th is Independence Day
    thursday = dt.datetime(2025, 8, 14, 4, 30, tzinfo=dt.UTC)

    plain = add_wait(thursday, 1, Step.WaitUnit.BUSINESS_DAYS, zone=KOLKATA)
    skipping = add_wait(
        thursday, 1, Step.WaitUnit.BUSINESS_DAYS, zone=KOLKATA, holiday_country="IN"
    )

    assert plain.astimezone(KOLKATA).date() == dt.date(2025, 8, 15)
    assert skipping.astimezone(KOLKATA).date() == dt.date(2025, 8, 18)


def test_calendar_days_keep_the_wall_clock_across_a_dst_change():
    """Two days after Saturday 09:00 EST is Monday 09:00 EDT (47 real hours)."""
    saturday = dt.datetime(2025, 3, 8, 14, 0, tzinfo=dt.UTC)  # 09:00 EST

    monday = add_wait(saturday, 2, Step.WaitUnit.DAYS, zone=NEW_YORK)

    assert monday.astimezone(NEW_YORK).time() == dt.time(9)
    assert monday - saturday == dt.timedelta(hours=47)


def test_hours_are_real_hours():
    """A three-hour wait is three hours of elapsed time in any zone."""
    assert add_wait(FRIDAY, 3, Step.WaitUnit.HOURS, zone=NEW_YORK) == (
        FRIDAY + dt.timedelta(hours=3)
    )


def test_a_local_send_time_falls_on_the_day_the_wait_ends_or_the_next():
    """ "At 09:15" after a 1-day wait from 10:00 is 09:15 two days later."""
    step = StepFactory(
        wait_amount=1, wait_unit=Step.WaitUnit.DAYS, send_at_local=dt.time(9, 15)
    )
    early = StepFactory(
        wait_amount=1, wait_unit=Step.WaitUnit.DAYS, send_at_local=dt.time(11)
    )

    # Wait ends Saturday 10:00 IST: 09:15 has passed, so Sunday 09:15
    assert step_due_at(step, FRIDAY, zone=KOLKATA) == dt.datetime(
        2025, 1, 26, 3, 45, tzinfo=dt.UTC
    )
    # 11:00 on Saturday is still ahead
    assert step_due_at(early, FRIDAY, zone=KOLKATA) == dt.datetime(
        2025, 1, 25, 5, 30, tzinfo=dt.UTC
    )
