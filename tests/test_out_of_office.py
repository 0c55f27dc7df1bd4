"""Out-of-office auto-replies pause enrollments; they are never replies or opt-outs."""

import datetime as dt

import pytest

from crm.models import EngagementEvent
from nurture.models import Enrollment
from nurture.services.engagement import ingest_events
from nurture.services.out_of_office import (
    is_out_of_office,
    pause_for_out_of_office,
    resume_returned_enrollments,
)
from tests.factories import CadenceFactory, ContactFactory, EnrollmentFactory

pytestmark = pytest.mark.django_db

NOW = dt.datetime(2025, 3, 3, 10, 0, tzinfo=dt.UTC)
REPLY = EngagementEvent.Type.EMAIL_REPLY
Paused = Enrollment.PauseReason


def reply(contact, **properties):
    return {"contact": contact, "type": REPLY, "occurred_at": NOW,
            "properties": properties}  # fmt: skip


@pytest.mark.parametrize(
    "properties",
    [
        {"auto_reply": True},
        {"auto_reply": "true"},
        {"headers": {"Auto-Submitted": "auto-replied"}},
        {"Auto-Submitted": "auto-generated"},
        {"headers": {"X-Autoreply": "yes"}},
        {"subject": "Automatic reply: Your next step"},
        {"subject": "Out of Office: back Monday"},
        {"body": "I am currently away with limited access to email."},
    ],
)
def test_common_auto_replies_are_recognised(properties):
    """Flags, auto-reply headers and the usual OOO wording all count."""
    assert is_out_of_office(EngagementEvent(type=REPLY, properties=properties))


@pytest.mark.parametrize(
    "event",
    [
        EngagementEvent(type=REPLY, properties={"subject": "Re: your course"}),
        EngagementEvent(type=REPLY, properties={"Auto-Submitted": "no"}),
        EngagementEvent(type="email_open", properties={"auto_reply": True}),
    ],
)
def test_a_person_replying_is_not_an_auto_reply(event):
    """A normal reply, Auto-Submitted: no, or another event type is no OOO."""
    assert not is_out_of_office(event)


def test_an_auto_reply_pauses_until_the_day_after_the_return_date():
    """Return on the 10th: resume on the 11th when the window opens locally."""
    # Given a contact in Kolkata (UTC+5:30) in a cadence opening at 09:00
    contact = ContactFactory(time_zone="Asia/Kolkata")
    cadence = CadenceFactory(
        exit_on_reply=True,
        send_window_start=dt.time(9, 0),
        send_window_end=dt.time(17, 0),
    )
    enrollment = EnrollmentFactory(contact=contact, cadence=cadence)

    # When their auto-reply lands
    ingest_events([reply(contact, auto_reply=True, return_date="2025-03-10")], now=NOW)

    # Then the enrollment pauses, without exiting and without an unsubscribe
    enrollment.refresh_from_db()
    contact.refresh_from_db()
    assert enrollment.state == Enrollment.State.PAUSED
    assert enrollment.pause_reason == Paused.OUT_OF_OFFICE
    assert enrollment.exit_reason == ""
    assert enrollment.resume_at == dt.datetime(2025, 3, 11, 3, 30, tzinfo=dt.UTC)
    assert contact.unsubscribed_at is None
    assert contact.do_not_email is False


def test_without_a_return_date_the_pause_lasts_a_week(settings):
    """An auto-reply with no date pauses for NURTURE_OUT_OF_OFFICE_DAYS."""
    settings.NURTURE_OUT_OF_OFFICE_DAYS = 7
    enrollment = EnrollmentFactory()

    ingest_events([reply(enrollment.contact, subject="Out of office")], now=NOW)

    enrollment.refresh_from_db()
    assert enrollment.resume_at == NOW + dt.timedelta(days=7)


def test_a_real_reply_still_exits():
    """Only the auto-reply is special: a person's reply ends the cadence."""
    enrollment = EnrollmentFactory(cadence=CadenceFactory(exit_on_reply=True))

    ingest_events([reply(enrollment.contact, subject="Re: call me")], now=NOW)

    enrollment.refresh_from_db()
    assert enrollment.state == Enrollment.State.EXITED
    assert enrollment.exit_reason == Enrollment.ExitReason.REPLIED


def test_a_manual_pause_is_left_alone():
    """An enrollment a user paused keeps its reason and gets no resume time."""
    enrollment = EnrollmentFactory(
        state=Enrollment.State.PAUSED, paused_at=NOW, pause_reason=Paused.MANUAL
    )

    ingest_events([reply(enrollment.contact, auto_reply=True)], now=NOW)

    enrollment.refresh_from_db()
    assert enrollment.pause_reason == Paused.MANUAL
    assert enrollment.resume_at is None


def test_resuming_keeps_the_step_and_the_wait_that_was_left():
    """Back from absence: same step, with the wait it had left when paused."""
    # Given an enrollment at step 3, due two days after the pause
    contact = ContactFactory(time_zone="UTC")
    enrollment = EnrollmentFactory(
        contact=contact, next_position=3, next_due_at=NOW + dt.timedelta(days=2)
    )
    ingest_events([reply(contact, auto_reply=True, return_date="2025-03-10")], now=NOW)

    # When the sweep runs before and after the resume time
    before = resume_returned_enrollments(now=dt.datetime(2025, 3, 10, tzinfo=dt.UTC))
    back = dt.datetime(2025, 3, 11, 12, 0, tzinfo=dt.UTC)
    after = resume_returned_enrollments(now=back)

    # Then it resumes once, at step 3, two days later
    enrollment.refresh_from_db()
    assert (before, after) == (0, 1)
    assert enrollment.state == Enrollment.State.ACTIVE
    assert enrollment.next_position == 3
    assert enrollment.next_due_at == back + dt.timedelta(days=2)
    assert (enrollment.pause_reason, enrollment.resume_at) == ("", None)


def test_a_step_overdue_at_the_pause_is_due_on_return_not_skipped():
    """A step already due when the auto-reply came is due the moment they return."""
    enrollment = EnrollmentFactory(next_due_at=NOW - dt.timedelta(hours=1))
    ingest_events([reply(enrollment.contact, auto_reply=True)], now=NOW)
    back = NOW + dt.timedelta(days=8)

    resume_returned_enrollments(now=back)

    enrollment.refresh_from_db()
    assert enrollment.next_due_at == back


def test_pausing_a_batch_costs_a_fixed_number_of_queries(django_assert_num_queries):
    """Two queries pause every enrollment of the batch's auto-replies."""
    enrollments = EnrollmentFactory.create_batch(20)
    events = [
        EngagementEvent(contact_id=e.contact_id, type=REPLY,
                        properties={"auto_reply": True})
        for e in enrollments
    ]  # fmt: skip

    with django_assert_num_queries(2):
        assert pause_for_out_of_office(events, now=NOW) == 20
