"""Database constraints that protect the core guarantees."""

import pytest
from django.db import IntegrityError, transaction

from crm.models import Contact
from nurture.models import Enrollment, Touch
from tests.factories import (
    ContactFactory,
    EnrollmentFactory,
    StepFactory,
    TouchFactory,
)

pytestmark = pytest.mark.django_db


def test_contact_email_is_unique_whatever_its_case():
    """Two contacts cannot share an address that differs only in case."""
    ContactFactory(email="Ada@Example.com")

    with pytest.raises(IntegrityError), transaction.atomic():
        Contact.objects.create(email="ada@example.COM")


def test_contact_email_is_stored_case_folded():
    """The stored address is the folded one, so lookups need no Lower()."""
    contact = ContactFactory(email="  Grace.Hopper@Example.COM ")

    contact.refresh_from_db()
    assert contact.email == "grace.hopper@example.com"


def test_many_contacts_may_have_no_email():
    """Leads without an address do not collide on the empty value."""
    ContactFactory(email="")
    ContactFactory(email="")

    assert Contact.objects.filter(email="").count() == 2


def test_one_open_enrollment_per_contact_and_cadence():
    """A second active enrollment in the same cadence is refused."""
    first = EnrollmentFactory()

    with pytest.raises(IntegrityError), transaction.atomic():
        EnrollmentFactory(contact=first.contact, cadence=first.cadence)


def test_an_ended_enrollment_does_not_block_a_new_one():
    """After an exit the contact can walk the cadence again."""
    first = EnrollmentFactory(state=Enrollment.State.EXITED)

    again = EnrollmentFactory(contact=first.contact, cadence=first.cadence)

    assert again.state == Enrollment.State.ACTIVE


def test_one_touch_per_enrollment_and_step():
    """The database refuses a second touch for the same step."""
    touch = TouchFactory()

    with pytest.raises(IntegrityError), transaction.atomic():
        Touch.objects.create(
            enrollment=touch.enrollment,
            step=touch.step,
            contact=touch.contact,
            channel=touch.channel,
            status=Touch.Status.SENT,
            created_at=touch.created_at,
        )


def test_same_step_position_twice_in_a_cadence_is_refused():
    step = StepFactory(position=1)

    with pytest.raises(IntegrityError), transaction.atomic():
        StepFactory(cadence=step.cadence, position=1)
