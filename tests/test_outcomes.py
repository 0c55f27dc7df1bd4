"""Tracking events stamp the email touch they name: open, click, reply, bounce."""

import datetime as dt

import pytest
from django.urls import reverse

from crm.models import EngagementEvent
from nurture.channels import touch_message_id
from nurture.models import StepVariant, Touch
from nurture.services.dispatch import dispatch_due_touches
from nurture.services.engagement import ingest_events
from nurture.services.outcomes import stamp_touch_outcomes
from tests.factories import (
    CadenceFactory,
    ContactFactory,
    EnrollmentFactory,
    StepFactory,
    TouchFactory,
    UserFactory,
)

pytestmark = pytest.mark.django_db

E = EngagementEvent.Type
NOW = dt.datetime(2025, 3, 3, 10, 0, tzinfo=dt.UTC)
LATER = NOW + dt.timedelta(hours=2)


def sent_touch(**fields) -> Touch:
    """Return a sent email touch carrying its stable Message-ID."""
    touch = TouchFactory(sent_at=NOW, **fields)
    touch.message_id = touch_message_id(touch.pk)
    touch.save(update_fields=["message_id"])
    return touch


def event(touch, type_, at=LATER, **properties):
    """Return an ingest row of the touch's contact."""
    return {
        "contact": touch.contact,
        "type": type_,
        "occurred_at": at,
        "properties": properties,
    }


def test_an_open_naming_the_message_id_stamps_the_touch():
    """An open with our Message-ID, brackets or not, sets opened_at once."""
    touch = sent_touch()
    bare = touch.message_id.strip("<>")

    ingest_events([event(touch, E.EMAIL_OPEN, message_id=bare)], now=LATER)
    ingest_events(
        [event(touch, E.EMAIL_OPEN, at=LATER + dt.timedelta(hours=1), message_id=bare)],
        now=LATER,
    )

    touch.refresh_from_db()
    assert touch.opened_at == LATER
    assert touch.outcome == Touch.Outcome.OPENED


def test_a_click_implies_an_open_and_raises_the_outcome():
    """A click by touch id stamps clicked_at and opened_at; outcome clicked."""
    touch = sent_touch()

    ingest_events([event(touch, E.EMAIL_CLICK, touch_id=touch.pk)], now=LATER)

    touch.refresh_from_db()
    assert (touch.opened_at, touch.clicked_at) == (LATER, LATER)
    assert touch.outcome == Touch.Outcome.CLICKED


def test_a_later_open_never_lowers_a_reply():
    """After a reply, an open stamps its time but the outcome stays replied."""
    touch = sent_touch(provider_message_id="prov-1")

    # Given a reply found by the provider's id
    ingest_events(
        [event(touch, E.EMAIL_REPLY, provider_message_id="prov-1")], now=LATER
    )
    # When an open arrives afterwards
    ingest_events([event(touch, E.EMAIL_OPEN, touch_id=touch.pk)], now=LATER)

    # Then both times are there and the reply is the outcome
    touch.refresh_from_db()
    assert touch.replied_at == LATER
    assert touch.opened_at == LATER
    assert touch.outcome == Touch.Outcome.REPLIED


def test_a_bounce_stamps_bounced():
    """A bounce naming the touch sets bounced_at and outcome bounced."""
    touch = sent_touch()

    ingest_events(
        [
            event(
                touch,
                E.EMAIL_BOUNCE,
                message_id=touch.message_id,
                bounce_type="soft",
            )
        ],
        now=LATER,
    )

    touch.refresh_from_db()
    assert touch.bounced_at == LATER
    assert touch.outcome == Touch.Outcome.BOUNCED


def test_an_out_of_office_reply_is_not_a_reply():
    """An auto-reply naming the touch leaves replied_at empty."""
    touch = sent_touch()

    ingest_events(
        [
            event(
                touch,
                E.EMAIL_REPLY,
                touch_id=touch.pk,
                subject="Out of office until Monday",
            )
        ],
        now=LATER,
    )

    touch.refresh_from_db()
    assert (touch.replied_at, touch.outcome) == (None, "")


def test_an_event_about_another_contacts_touch_changes_nothing():
    """A touch id of someone else's email is ignored; the event is stored."""
    touch = sent_touch()
    stranger = ContactFactory()

    result = ingest_events(
        [
            {
                "contact": stranger,
                "type": E.EMAIL_OPEN,
                "occurred_at": LATER,
                "properties": {"touch_id": touch.pk},
            }
        ],
        now=LATER,
    )

    touch.refresh_from_db()
    assert touch.opened_at is None
    assert len(result.created) == 1


def test_an_event_naming_no_touch_is_stored_as_before():
    """An open without any reference is stored and stamps no touch."""
    touch = sent_touch()

    result = ingest_events([event(touch, E.EMAIL_OPEN)], now=LATER)

    touch.refresh_from_db()
    assert len(result.created) == 1
    assert touch.opened_at is None


@pytest.mark.parametrize("size", [3, 30])
def test_stamping_a_batch_takes_the_same_queries_whatever_its_size(
    size, django_assert_num_queries
):
    """One read, one update per stamped field and one outcome update."""
    touches = [sent_touch() for _ in range(size)]
    events = [
        EngagementEvent(
            contact_id=touch.contact_id,
            type=E.EMAIL_CLICK,
            occurred_at=LATER,
            properties={"message_id": touch.message_id},
        )
        for touch in touches
    ]

    with django_assert_num_queries(4):
        stamped = stamp_touch_outcomes(events)

    assert stamped == 2 * size
    assert Touch.objects.filter(outcome="clicked").count() == size


def two_step_cadence():
    """Return an enrollment due now in: email, then email skipped if unread."""
    cadence = CadenceFactory()
    StepFactory(cadence=cadence, position=1)
    StepFactory(
        cadence=cadence,
        position=2,
        wait_amount=1,
        skip_conditions=["previous_email_not_opened"],
    )
    return EnrollmentFactory(
        contact=ContactFactory(owner=UserFactory()),
        cadence=cadence,
        enrolled_at=NOW,
        next_due_at=NOW,
    )


@pytest.mark.parametrize("opened", [True, False])
def test_previous_email_not_opened_sees_a_tracked_open(opened):
    """Step 2 goes out after an open of step 1, and is skipped without one."""
    # Given the first email dispatched
    enrollment = two_step_cadence()
    dispatch_due_touches(now=NOW)
    first = Touch.objects.get(enrollment=enrollment, step__position=1)
    assert first.message_id == touch_message_id(first.pk)

    # When the contact opens it (or not) before step 2 is due
    if opened:
        ingest_events(
            [event(first, E.EMAIL_OPEN, message_id=first.message_id)], now=LATER
        )
    dispatch_due_touches(now=NOW + dt.timedelta(days=1, hours=1))

    # Then step 2 was sent after the open and skipped without it
    second = Touch.objects.get(enrollment=enrollment, step__position=2)
    if opened:
        assert second.status == Touch.Status.SENT
    else:
        assert (second.status, second.detail) == (
            Touch.Status.SKIPPED,
            "previous email not opened",
        )


def test_variant_rates_in_the_admin_count_tracked_opens(admin_client):
    """Opens stamped from events show as a non-zero open rate per variant."""
    # Given a variant with two sent touches, one opened through an event
    step = StepFactory()
    variant = StepVariant.objects.create(step=step, label="A", subject="s", body="b")
    touches = [
        sent_touch(step=step, variant=variant, enrollment__cadence=step.cadence)
        for _ in range(2)
    ]
    ingest_events(
        [event(touches[0], E.EMAIL_CLICK, message_id=touches[0].message_id)],
        now=LATER,
    )

    # When the variant list is shown
    url = reverse("admin:nurture_stepvariant_changelist")
    response = admin_client.get(url)

    # Then half were opened and clicked
    row = response.context["cl"].result_list.get(pk=variant.pk)
    assert (row.sent_count, row.opened_count, row.clicked_count) == (2, 1, 1)
    assert "50%" in response.content.decode()
