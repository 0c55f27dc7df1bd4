"""No automated email to anyone who opted out, bounced or lacks consent."""

import datetime as dt

import pytest
from django.core import mail

from crm.models import Contact
from nurture.models import Enrollment, Touch
from nurture.services.dispatch import dispatch_due_touches
from nurture.services.suppression import email_suppression
from tests.factories import (
    AccountFactory,
    CadenceFactory,
    ContactFactory,
    EnrollmentFactory,
    StepFactory,
)

pytestmark = pytest.mark.django_db

NOW = dt.datetime(2025, 3, 3, 10, 0, tzinfo=dt.UTC)


def enroll_in_email(contact):
    cadence = CadenceFactory()
    StepFactory(cadence=cadence, position=1, channel="email")
    return EnrollmentFactory(contact=contact, cadence=cadence, next_due_at=NOW)


@pytest.mark.parametrize(
    ("fields", "detail"),
    [
        ({"hard_bounced_at": NOW}, "hard bounced"),
        ({"do_not_email": True}, "do not email"),
        ({"email": ""}, "no email address"),
        ({"country": "Germany"}, "no opt-in consent (DE requires it)"),
        ({"country": "United Kingdom"}, "no opt-in consent (GB requires it)"),
        (
            {"country": "FR", "consent_basis": "legitimate_interest"},
            "no opt-in consent (FR requires it)",
        ),
    ],
)
def test_a_suppressed_contact_gets_a_skipped_touch_that_says_why(fields, detail):
    """The email is skipped at send time, the reason recorded on the touch."""
    enrollment = enroll_in_email(ContactFactory(**fields))

    result = dispatch_due_touches(now=NOW)

    touch = Touch.objects.get(enrollment=enrollment)
    assert (touch.status, touch.detail) == ("skipped", detail)
    assert (result.sent, result.skipped) == (0, 1)
    assert mail.outbox == []


def test_consent_follows_the_account_country_when_the_contact_has_none():
    """A contact of a German account needs opt-in even with no country."""

    contact = ContactFactory(country="", account=AccountFactory(country="Germany"))

    assert email_suppression(contact).startswith("no opt-in consent")


@pytest.mark.parametrize(
    ("country", "basis"),
    [("Germany", "opt_in"), ("India", ""), ("United States", "legitimate_interest")],
)
def test_opt_in_in_the_eu_or_no_opt_out_elsewhere_is_mailed(country, basis):
    """EU opt-in, or any contact outside opt-in countries, gets the email."""
    enroll_in_email(ContactFactory(country=country, consent_basis=basis))

    assert dispatch_due_touches(now=NOW).sent == 1
    assert len(mail.outbox) == 1


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"complained_at": NOW}, Enrollment.ExitReason.COMPLAINED),
        ({"unsubscribed_at": NOW}, Enrollment.ExitReason.UNSUBSCRIBED),
        ({"do_not_contact": True}, Enrollment.ExitReason.DO_NOT_CONTACT),
    ],
)
def test_an_opt_out_that_lands_after_scheduling_is_caught_at_send_time(fields, reason):
    """A flag set between scheduling and sending stops the email and exits."""
    # Given a contact enrolled while still mailable
    contact = ContactFactory()
    enrollment = enroll_in_email(contact)

    # When it opts out before the step is due
    Contact.objects.filter(pk=contact.pk).update(**fields)
    dispatch_due_touches(now=NOW)

    # Then nothing is sent and the enrollment ends with the reason
    enrollment.refresh_from_db()
    assert (enrollment.state, enrollment.exit_reason) == ("exited", reason)
    assert mail.outbox == []
    assert not Touch.objects.filter(status="sent").exists()
