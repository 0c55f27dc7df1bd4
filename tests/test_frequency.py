"""At most N touches per contact in D days, over all cadences; later ones wait."""

import datetime as dt

import pytest
from django.core import mail

from nurture.models import Enrollment, Touch
from nurture.services.dispatch import dispatch_due_touches
from tests.factories import (
    CadenceFactory,
    ContactFactory,
    EnrollmentFactory,
    StepFactory,
    TouchFactory,
    UserFactory,
)

pytestmark = pytest.mark.django_db

NOW = dt.datetime(2025, 3, 3, 10, 0, tzinfo=dt.UTC)
DAY = dt.timedelta(days=1)


def enroll(contact, channel="email"):
    cadence = CadenceFactory()
    StepFactory(cadence=cadence, position=1, channel=channel)
    return EnrollmentFactory(contact=contact, cadence=cadence, next_due_at=NOW)


def finished_enrollment(contact):
    """An enrollment of another cadence whose touches are history."""
    return EnrollmentFactory(
        contact=contact, state="completed", next_due_at=None, enrolled_at=NOW
    )


def test_a_touch_over_the_cap_waits_until_the_oldest_leaves_the_window():
    """With 3 touches in the last 7 days, the 4th waits for the oldest to age."""
    # Given three touches from another cadence, 6, 3 and 1 days ago
    contact = ContactFactory()
    earlier = finished_enrollment(contact)
    for days_ago in (6, 3, 1):
        TouchFactory(
            enrollment=earlier, contact=contact, created_at=NOW - days_ago * DAY
        )
    enrollment = enroll(contact)

    # When the next email falls due
    result = dispatch_due_touches(now=NOW)

    # Then it is deferred to when the 6-day-old touch turns 7 days old
    assert (result.sent, result.deferred) == (0, 1)
    enrollment.refresh_from_db()
    assert enrollment.next_due_at == NOW + DAY
    assert not Touch.objects.filter(enrollment=enrollment).exists()

    # When that moment comes, it goes out: deferred, not dropped
    assert dispatch_due_touches(now=NOW + DAY).sent == 1
    assert len(mail.outbox) == 1


def test_skipped_and_failed_touches_do_not_count():
    """Only touches that reached the contact use up the cap."""
    contact = ContactFactory()
    earlier = finished_enrollment(contact)
    for status in ("skipped", "failed", "sending"):
        TouchFactory(enrollment=earlier, contact=contact, status=status, created_at=NOW)
    enroll(contact)

    assert dispatch_due_touches(now=NOW).sent == 1


def test_touches_planned_in_the_same_batch_count_too(settings):
    """Five cadences due at once for one contact: three go, two wait."""
    settings.NURTURE_FREQUENCY_CAP = {"touches": 3, "days": 7}
    contact = ContactFactory(owner=UserFactory())
    for channel in ("email", "call", "email", "linkedin", "email"):
        enroll(contact, channel)

    result = dispatch_due_touches(now=NOW)

    assert result.sent + result.tasks_created == 3
    assert result.deferred == 2
    waiting = Enrollment.objects.filter(next_due_at=NOW + 7 * DAY)
    assert waiting.count() == 2


def test_the_cap_can_be_turned_off(settings):
    """NURTURE_FREQUENCY_CAP = None lets every due touch through."""
    settings.NURTURE_FREQUENCY_CAP = None
    contact = ContactFactory()
    for _ in range(5):
        enroll(contact)

    assert dispatch_due_touches(now=NOW).sent == 5
