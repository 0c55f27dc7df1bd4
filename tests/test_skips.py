"""Skip conditions: named per step, decided from a batch-loaded history."""

import datetime as dt

import pytest

from nurture.models import Channel, Touch
from nurture.services.skips import load_histories, should_skip
from tests.factories import ContactFactory, EnrollmentFactory, StepFactory, TouchFactory

pytestmark = pytest.mark.django_db

NOW = dt.datetime(2025, 3, 3, 10, 0, tzinfo=dt.UTC)


def enrollment_with_email(opened: bool):
    enrollment = EnrollmentFactory()
    first = StepFactory(cadence=enrollment.cadence, position=1, channel=Channel.EMAIL)
    TouchFactory(
        enrollment=enrollment, step=first, status=Touch.Status.SENT,
        opened_at=NOW if opened else None,
    )  # fmt: skip
    later = StepFactory(cadence=enrollment.cadence, position=2, channel=Channel.EMAIL)
    return enrollment, later


@pytest.mark.parametrize(
    "opened, condition, expected",
    [
        (False, "previous_email_not_opened", "previous email not opened"),
        (True, "previous_email_not_opened", None),
        (True, "previous_email_opened", "previous email opened"),
        (False, "previous_email_opened", None),
    ],
)
def test_previous_email_conditions_read_the_enrollments_history(
    opened, condition, expected
):
    """The last email sent earlier in the same enrollment decides."""
    enrollment, step = enrollment_with_email(opened)
    step.skip_conditions = [condition]
    history = load_histories([enrollment.pk])[enrollment.pk]

    assert should_skip(step, enrollment.contact, history) == expected


def test_without_an_earlier_email_nothing_went_unread():
    """A first email is never skipped as "previous email not opened"."""
    step = StepFactory(skip_conditions=["previous_email_not_opened"])

    assert should_skip(step, ContactFactory(), None) is None


@pytest.mark.parametrize(
    "condition, field, reason",
    [
        ("no_linkedin_url", "linkedin_url", "no LinkedIn profile URL"),
        ("no_phone", "phone", "no phone number"),
        ("no_email", "email", "no email address"),
    ],
)
def test_missing_contact_details_skip(condition, field, reason):
    """A LinkedIn step without a profile URL, a call without a phone, and so on."""
    step = StepFactory(channel=Channel.LINKEDIN, skip_conditions=[condition])
    missing = ContactFactory.build(**{field: ""})
    present = ContactFactory.build(
        linkedin_url="https://www.linkedin.com/in/ada", phone="+441234567890"
    )

    assert should_skip(step, missing) == reason
    assert should_skip(step, present) is None


def test_an_unknown_condition_never_blocks_the_step():
    """A typo in the admin is ignored rather than skipping everyone."""
    step = StepFactory(skip_conditions=["no_fax"])

    assert should_skip(step, ContactFactory.build()) is None


def test_histories_load_in_one_query(django_assert_num_queries):
    """The whole batch's history is one query."""
    enrollments = [enrollment_with_email(True)[0] for _ in range(10)]

    with django_assert_num_queries(1):
        histories = load_histories([e.pk for e in enrollments])

    assert all(histories[e.pk].emails[0].opened for e in enrollments)
