"""Re-entry, pausing and resuming: no step skipped, none repeated."""

import datetime as dt

import pytest
from django.core import mail

from crm.models import Contact
from nurture.models import Cadence, Enrollment, Touch
from nurture.services.dispatch import dispatch_due_touches
from nurture.services.enrollment import (
    enroll_contact,
    enroll_contacts,
    pause_cadence,
    pause_enrollment,
    resume_cadence,
    resume_enrollment,
)
from nurture.services.errors import NurtureError
from tests.factories import CadenceFactory, ContactFactory, StepFactory

pytestmark = pytest.mark.django_db

NOW = dt.datetime(2025, 3, 3, 10, 0, tzinfo=dt.UTC)
DAY = dt.timedelta(days=1)


@pytest.fixture
def cadence():
    """Three emails, two days apart."""
    cadence = CadenceFactory()
    for position in (1, 2, 3):
        StepFactory(cadence=cadence, position=position, wait_amount=2 * (position > 1))
    return cadence


def positions_sent(enrollment):
    return sorted(
        Touch.objects.filter(enrollment=enrollment, status="sent").values_list(
            "step__position", flat=True
        )
    )


def test_a_contact_cleared_of_do_not_contact_can_always_come_back(cadence):
    """A do-not-contact exit never blocks a later enrollment, even on "never"."""
    # Given a contact who left the cadence because it was marked do-not-contact
    contact = ContactFactory()
    enroll_contact(contact, cadence, now=NOW)
    Contact.objects.filter(pk=contact.pk).update(do_not_contact=True)
    dispatch_due_touches(now=NOW)
    assert Enrollment.objects.get().exit_reason == "do_not_contact"

    # When the flag is cleared and the contact is enrolled again
    Contact.objects.filter(pk=contact.pk).update(do_not_contact=False)
    contact.refresh_from_db()
    again = enroll_contact(contact, cadence, now=NOW + DAY)

    # Then a new enrollment starts at step one
    assert cadence.reenrollment == Cadence.Reenrollment.NEVER
    assert (again.state, again.next_position) == ("active", 1)
    assert Enrollment.objects.count() == 2


def test_other_exits_still_follow_the_never_policy(cadence):
    """An enrollment removed for another reason cannot restart on "never"."""
    contact = ContactFactory()
    enroll_contact(contact, cadence, now=NOW)
    Contact.objects.filter(pk=contact.pk).update(unsubscribed_at=NOW)
    dispatch_due_touches(now=NOW)

    with pytest.raises(NurtureError):
        enroll_contact(contact, cadence, now=NOW + DAY)
    assert enroll_contacts([contact.pk], cadence, now=NOW + DAY) == 0


def test_re_enrollment_after_n_days_starts_a_new_enrollment(cadence):
    """After the wait, re-entry is a new enrollment; the old keeps its touches."""
    cadence.reenrollment = Cadence.Reenrollment.AFTER_DAYS
    cadence.reenroll_after_days = 30
    cadence.save()
    contact = ContactFactory()
    first = enroll_contact(contact, cadence, now=NOW)
    for moment in (NOW, NOW + 2 * DAY, NOW + 4 * DAY):
        dispatch_due_touches(now=moment)
    first.refresh_from_db()
    assert first.state == "completed"

    # Too early: refused, in one and in bulk
    with pytest.raises(NurtureError):
        enroll_contact(contact, cadence, now=NOW + 10 * DAY)
    assert enroll_contacts([contact.pk], cadence, now=NOW + 10 * DAY) == 0

    # After 30 days: a new enrollment walks the steps again, once each
    assert enroll_contacts([contact.pk], cadence, now=NOW + 40 * DAY) == 1
    second = Enrollment.objects.exclude(pk=first.pk).get()
    for moment in (NOW + 40 * DAY, NOW + 42 * DAY, NOW + 44 * DAY, NOW + 44 * DAY):
        dispatch_due_touches(now=moment)
    assert positions_sent(first) == [1, 2, 3]
    assert positions_sent(second) == [1, 2, 3]
    assert len(mail.outbox) == 6


def test_pausing_a_cadence_holds_every_enrollment_without_skipping(cadence):
    """A paused cadence sends nothing; on resume each step keeps its wait."""
    # Given an enrollment that sent step 1 and waits two days for step 2
    contact = ContactFactory()
    enrollment = enroll_contact(contact, cadence, now=NOW)
    dispatch_due_touches(now=NOW)

    # When the cadence is paused for five days
    pause_cadence(cadence, now=NOW + DAY)
    held = dispatch_due_touches(now=NOW + 3 * DAY)
    resume_cadence(cadence, now=NOW + 6 * DAY)

    # Then nothing was claimed while paused, and step 2 is due a day later
    assert held.claimed == 0
    enrollment.refresh_from_db()
    assert (enrollment.next_position, enrollment.next_due_at) == (2, NOW + 7 * DAY)
    assert dispatch_due_touches(now=NOW + 6 * DAY).sent == 0
    assert dispatch_due_touches(now=NOW + 7 * DAY).sent == 1
    assert positions_sent(enrollment) == [1, 2]


def test_pausing_twice_or_resuming_a_running_cadence_is_refused(cadence):
    """The cadence actions say when they make no sense."""
    with pytest.raises(NurtureError):
        resume_cadence(cadence, now=NOW)
    pause_cadence(cadence, now=NOW)
    with pytest.raises(NurtureError):
        pause_cadence(cadence, now=NOW)


def test_pausing_one_enrollment_neither_skips_nor_repeats_a_step(cadence):
    """Paused past its due time, the step runs once after resuming."""
    enrollment = enroll_contact(ContactFactory(), cadence, now=NOW)
    dispatch_due_touches(now=NOW)

    pause_enrollment(enrollment, now=NOW + DAY)
    assert dispatch_due_touches(now=NOW + 5 * DAY).claimed == 0
    resume_enrollment(enrollment, now=NOW + 5 * DAY)

    assert dispatch_due_touches(now=NOW + 6 * DAY).sent == 1
    assert dispatch_due_touches(now=NOW + 6 * DAY).sent == 0
    assert positions_sent(enrollment) == [1, 2]
