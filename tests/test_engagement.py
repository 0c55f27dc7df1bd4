"""ingest_events: stored once, unscored, with suppression and exits at once."""

import datetime as dt

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from crm.models import EngagementEvent
from nurture.models import Enrollment
from nurture.services.engagement import ingest_events
from tests.concurrency import run_at_once
from tests.factories import (
    AccountFactory,
    CadenceFactory,
    ContactFactory,
    EnrollmentFactory,
)

pytestmark = pytest.mark.django_db

NOW = dt.datetime(2025, 3, 3, 10, 0, tzinfo=dt.UTC)
E = EngagementEvent.Type
State = Enrollment.State


def row(contact, type=E.PAGE_VIEW, **extra):
    return {
        "contact": contact,
        "type": type,
        "occurred_at": NOW - dt.timedelta(minutes=5),
        **extra,
    }


def test_events_are_stored_unscored_for_the_rescore_task():
    """New events wait, unscored, for the rescoring task to count them."""
    contact = ContactFactory()

    result = ingest_events(
        [row(contact, source="web", properties={"path": "/pricing"}), row(contact.pk)],
        now=NOW,
    )

    assert len(result.created) == 2
    assert result.duplicates == 0
    stored = EngagementEvent.objects.filter(contact=contact)
    assert stored.count() == 2
    assert all(event.pk for event in result.created)
    assert not stored.filter(scored_at__isnull=False).exists()
    assert stored.filter(source="web", properties={"path": "/pricing"}).count() == 1


def test_a_repeated_external_id_is_stored_once():
    """A resent event, or the same id twice in a batch, counts as a duplicate."""
    contact = ContactFactory()
    ingest_events([row(contact, external_id="esp-1")], now=NOW)

    result = ingest_events(
        [
            row(contact, external_id="esp-1"),
            row(contact, external_id="esp-2"),
            row(contact, external_id="esp-2"),
        ],
        now=NOW,
    )

    assert [event.external_id for event in result.created] == ["esp-2"]
    assert result.duplicates == 2
    assert EngagementEvent.objects.count() == 2


def test_unsubscribe_suppresses_and_ends_every_open_enrollment():
    """An unsubscribe stamps the contact and takes them out of all cadences."""
    contact = ContactFactory()
    active = EnrollmentFactory(contact=contact)
    paused = EnrollmentFactory(contact=contact, state=State.PAUSED)
    bystander = EnrollmentFactory()

    ingest_events([row(contact, E.UNSUBSCRIBE)], now=NOW)

    contact.refresh_from_db()
    assert contact.unsubscribed_at == NOW
    for enrollment in (active, paused):
        enrollment.refresh_from_db()
        assert enrollment.state == State.EXITED
        assert enrollment.exit_reason == Enrollment.ExitReason.UNSUBSCRIBED
        assert enrollment.ended_at == NOW
    bystander.refresh_from_db()
    assert bystander.state == State.ACTIVE


def test_a_second_unsubscribe_keeps_the_first_time():
    """The first unsubscribe time is the one that counts."""
    first = NOW - dt.timedelta(days=3)
    contact = ContactFactory(unsubscribed_at=first)

    ingest_events([row(contact, E.UNSUBSCRIBE)], now=NOW)

    contact.refresh_from_db()
    assert contact.unsubscribed_at == first


@pytest.mark.parametrize("bounce_type", ["hard", "Permanent"])
def test_a_hard_bounce_suppresses_and_ends_enrollments(bounce_type):
    """A hard bounce stops all mail to the address and ends its cadences."""
    contact = ContactFactory()
    enrollment = EnrollmentFactory(contact=contact)

    ingest_events(
        [row(contact, E.EMAIL_BOUNCE, properties={"bounce_type": bounce_type})],
        now=NOW,
    )

    contact.refresh_from_db()
    enrollment.refresh_from_db()
    assert contact.hard_bounced_at == NOW
    assert enrollment.exit_reason == Enrollment.ExitReason.BOUNCED


def test_a_soft_bounce_changes_nothing():
    """A temporary failure is only recorded; the contact stays mailable."""
    contact = ContactFactory()
    enrollment = EnrollmentFactory(contact=contact)

    ingest_events(
        [row(contact, E.EMAIL_BOUNCE, properties={"bounce_type": "soft"})], now=NOW
    )

    contact.refresh_from_db()
    enrollment.refresh_from_db()
    assert contact.hard_bounced_at is None
    assert enrollment.state == State.ACTIVE


def test_a_complaint_stops_email_and_ends_enrollments():
    """A spam complaint marks the contact do-not-email and ends their cadences."""
    contact = ContactFactory()
    enrollment = EnrollmentFactory(contact=contact)

    ingest_events([row(contact, E.OTHER, properties={"complaint": True})], now=NOW)

    contact.refresh_from_db()
    enrollment.refresh_from_db()
    assert contact.do_not_email is True
    assert enrollment.state == State.EXITED


def test_a_reply_ends_only_cadences_that_exit_on_reply():
    """A reply ends cadences with exit_on_reply and leaves the others running."""
    contact = ContactFactory()
    stops = EnrollmentFactory(contact=contact, cadence=CadenceFactory())
    keeps = EnrollmentFactory(
        contact=contact, cadence=CadenceFactory(exit_on_reply=False)
    )

    ingest_events([row(contact, E.EMAIL_REPLY)], now=NOW)

    stops.refresh_from_db()
    keeps.refresh_from_db()
    assert stops.state == State.EXITED
    assert stops.exit_reason == Enrollment.ExitReason.REPLIED
    assert keeps.state == State.ACTIVE


def test_a_reply_stops_the_whole_account_where_the_cadence_says_so():
    """One reply ends the account's other enrollments in that cadence only."""
    # given two colleagues and an outsider in an account-wide cadence, and
    # the colleague also in a cadence without the option
    acme = AccountFactory()
    account_wide = CadenceFactory(stop_account_on_reply=True)
    other = CadenceFactory()
    replier = ContactFactory(account=acme)
    colleague = ContactFactory(account=acme)
    outsider = ContactFactory(account=AccountFactory())
    EnrollmentFactory(contact=replier, cadence=account_wide)
    stopped = EnrollmentFactory(contact=colleague, cadence=account_wide)
    untouched = EnrollmentFactory(contact=colleague, cadence=other)
    stranger = EnrollmentFactory(contact=outsider, cadence=account_wide)

    # when one of them replies
    ingest_events([row(replier, E.EMAIL_REPLY)], now=NOW)

    # then the colleague stops in the account-wide cadence only
    for enrollment in (stopped, untouched, stranger):
        enrollment.refresh_from_db()
    assert stopped.state == State.EXITED
    assert stopped.exit_reason == Enrollment.ExitReason.ACCOUNT_REPLIED
    assert untouched.state == State.ACTIVE
    assert stranger.state == State.ACTIVE


def test_without_the_option_a_reply_stops_only_the_replier():
    acme = AccountFactory()
    cadence = CadenceFactory()
    replier = ContactFactory(account=acme)
    EnrollmentFactory(contact=replier, cadence=cadence)
    colleague = EnrollmentFactory(contact=ContactFactory(account=acme), cadence=cadence)

    ingest_events([row(replier, E.EMAIL_REPLY)], now=NOW)

    colleague.refresh_from_db()
    assert colleague.state == State.ACTIVE


def test_a_meeting_ends_only_cadences_that_exit_on_meeting():
    """A booked meeting ends cadences with exit_on_meeting only."""
    contact = ContactFactory()
    stops = EnrollmentFactory(contact=contact, cadence=CadenceFactory())
    keeps = EnrollmentFactory(
        contact=contact, cadence=CadenceFactory(exit_on_meeting=False)
    )

    ingest_events([row(contact, E.MEETING_BOOKED)], now=NOW)

    stops.refresh_from_db()
    keeps.refresh_from_db()
    assert stops.exit_reason == Enrollment.ExitReason.MEETING
    assert keeps.state == State.ACTIVE


def test_query_count_does_not_grow_with_the_batch():
    """A batch of 40 events costs the same queries as a batch of 4."""

    def run(size):
        contacts = ContactFactory.create_batch(size)
        rows = []
        for n, contact in enumerate(contacts):
            EnrollmentFactory(contact=contact)
            rows += [
                row(contact, E.UNSUBSCRIBE, external_id=f"u-{size}-{n}"),
                row(contact, E.EMAIL_REPLY),
                row(contact, E.MEETING_BOOKED),
                row(contact, E.EMAIL_BOUNCE, properties={"bounce_type": "hard"}),
            ]
        with CaptureQueriesContext(connection) as queries:
            ingest_events(rows, now=NOW)
        return len(queries)

    assert run(1) == run(10)


def test_a_numeric_external_id_names_the_same_event_as_its_text():
    """A sender numbering events 42 or "42" sends the same event twice."""
    contact = ContactFactory()
    row = {
        "contact": contact.pk,
        "type": "page_view",
        "occurred_at": NOW,
        "source": "web",
        "external_id": "42",
    }

    first = ingest_events([row], now=NOW)
    again = ingest_events([{**row, "external_id": 42}], now=NOW)

    assert len(first.created) == 1
    assert again.created == [] and again.duplicates == 1
    assert again.ids == first.ids
    assert EngagementEvent.objects.get().external_id == "42"


def test_an_external_id_of_zero_is_a_key_not_a_missing_one():
    """A sender whose first event is number 0 sends it once however it is typed."""
    contact = ContactFactory()
    row = {"contact": contact.pk, "type": "page_view", "occurred_at": NOW}

    for external_id in (0, 0, "0"):
        ingest_events([{**row, "source": "web", "external_id": external_id}], now=NOW)

    assert list(EngagementEvent.objects.values_list("external_id", flat=True)) == ["0"]


def test_events_are_stored_in_the_order_they_were_sent():
    """Ids rise in input order whether or not an event carries a key."""
    contact = ContactFactory()
    row = {"contact": contact.pk, "type": "page_view", "occurred_at": NOW}
    rows = [{**row, "source": "web", "external_id": f"k{n}"} if n % 2 else row
            for n in range(6)]  # fmt: skip

    ids = ingest_events(rows, now=NOW).ids

    assert None not in ids
    assert ids == sorted(ids)


@pytest.mark.django_db(transaction=True)
def test_requests_racing_with_the_same_keys_store_and_report_each_event_once():
    """Three requests sending overlapping keys at once: every key stored once,
    reported created by exactly one request and a duplicate by the others,
    and its effects applied once."""
    if connection.vendor != "postgresql":
        pytest.skip("concurrent writers need PostgreSQL")
    contact = ContactFactory()
    enrollment = EnrollmentFactory(contact=contact)
    row = {
        "contact": contact.pk,
        "type": "page_view",
        "occurred_at": NOW,
        "source": "web",
    }
    calls = [range(0, 600), range(200, 800), range(400, 1000)]

    def send(numbers):
        rows = [{**row, "external_id": f"e{n}"} for n in numbers]
        rows.append({**row, "type": "email_reply", "external_id": "reply-1"})
        return lambda: ingest_events(rows, now=NOW)

    results = run_at_once(*(send(numbers) for numbers in calls))

    assert EngagementEvent.objects.count() == 1001
    assert sum(len(r.created) for r in results) == 1001
    assert sum(r.duplicates for r in results) == 3 * 601 - 1001
    stored = dict(EngagementEvent.objects.values_list("external_id", "pk"))
    for result in results:
        assert None not in result.ids
    assert {pk for r in results for pk in r.ids} == set(stored.values())
    enrollment.refresh_from_db()
    assert enrollment.state == Enrollment.State.EXITED
