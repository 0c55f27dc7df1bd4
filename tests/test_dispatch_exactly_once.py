"""Each touch goes out at most once, whatever crashes, retries or overlaps."""

import datetime as dt
import threading
from collections import Counter

import pytest
from django.core import mail
from django.db import connection

from crm.models import Contact
from nurture.models import Enrollment, Touch
from nurture.services.dispatch import UNKNOWN_OUTCOME, dispatch_due_touches
from tests.factories import CadenceFactory, EnrollmentFactory, StepFactory

NOW = dt.datetime(2025, 3, 3, 10, 0, tzinfo=dt.UTC)
AFTER_CLAIM = dt.timedelta(seconds=301)


def due_enrollments(count: int):
    """Create ``count`` due enrollments of a two-email cadence, in bulk."""
    cadence = CadenceFactory()
    StepFactory(cadence=cadence, position=1)
    StepFactory(cadence=cadence, position=2, wait_amount=1)
    contacts = Contact.objects.bulk_create(
        Contact(email=f"once{n}@example.com", country="India") for n in range(count)
    )
    Enrollment.objects.bulk_create(
        Enrollment(contact=c, cadence=cadence, enrolled_at=NOW, next_due_at=NOW)
        for c in contacts
    )
    return cadence


def assert_each_sent_once(count: int):
    """Each sent touch is one message with its own Message-ID."""
    ids = Counter(message.extra_headers["Message-ID"] for message in mail.outbox)
    assert len(mail.outbox) == count
    assert len(ids) == count
    assert Touch.objects.filter(status="sent").count() == count


@pytest.mark.django_db
def test_runs_repeated_for_the_same_moment_or_caught_up_later_send_once():
    """A retried task or a restart catching up never sends a step twice."""
    due_enrollments(50)

    # When the same run is repeated, as a task retried after its timeout
    first = dispatch_due_touches(now=NOW, batch_size=100)
    again = [dispatch_due_touches(now=NOW, batch_size=100) for _ in range(3)]

    # Then the repeats find nothing due
    assert first.sent == 50
    assert [r.claimed for r in again] == [0, 0, 0]

    # When the cluster comes back after a day down with schedules missed
    catch_up = [dispatch_due_touches(now=NOW + 3 * dt.timedelta(days=1))]
    catch_up.append(dispatch_due_touches(now=NOW + 3 * dt.timedelta(days=1)))

    # Then step 2 goes out once each, and step 1 is not resent
    assert [r.sent for r in catch_up] == [50, 0]
    assert_each_sent_once(100)


@pytest.mark.django_db
def test_a_worker_killed_mid_send_is_not_resent(django_assert_max_num_queries):
    """A touch left "sending" after its claim ran out is failed, never resent."""
    # Given a worker that recorded a touch, then died before saving the outcome
    due_enrollments(3)
    enrollment = Enrollment.objects.order_by("pk").first()
    Touch.objects.create(
        enrollment=enrollment,
        step=enrollment.cadence.steps.get(position=1),
        contact=enrollment.contact,
        channel="email",
        status="sending",
        created_at=NOW,
        attempts=1,
    )
    Enrollment.objects.filter(pk=enrollment.pk).update(claimed_until=NOW)

    # When a later dispatcher runs
    result = dispatch_due_touches(now=NOW + AFTER_CLAIM)

    # Then the two others go out and the lost one is failed, not resent
    assert result.sent == 2
    lost = Touch.objects.get(enrollment=enrollment)
    assert (lost.status, lost.detail) == ("failed", UNKNOWN_OUTCOME)
    enrollment.refresh_from_db()
    assert enrollment.next_position == 2
    assert all(m.to[0] != enrollment.contact.email for m in mail.outbox)


@pytest.mark.django_db
def test_a_failed_send_waits_five_then_thirty_minutes(settings):
    """Backoff is stored on the touch and enrollment; early runs do nothing."""
    settings.EMAIL_BACKEND = "tests.test_dispatch.RefusingBackend"
    cadence = CadenceFactory()
    StepFactory(cadence=cadence, position=1)
    contact = Contact.objects.create(email="refuse@example.com")
    enrollment = EnrollmentFactory(contact=contact, cadence=cadence, next_due_at=NOW)

    dispatch_due_touches(now=NOW)
    touch = Touch.objects.get()
    assert (touch.status, touch.attempts) == ("failed", 1)
    assert touch.retry_at == NOW + dt.timedelta(minutes=5)
    enrollment.refresh_from_db()
    assert (enrollment.next_due_at, enrollment.claimed_until) == (touch.retry_at, None)

    # Before the backoff is over nothing is claimed
    assert dispatch_due_touches(now=NOW + dt.timedelta(minutes=4)).claimed == 0
    dispatch_due_touches(now=NOW + dt.timedelta(minutes=5))
    touch.refresh_from_db()
    assert touch.attempts == 2
    assert touch.retry_at == NOW + dt.timedelta(minutes=35)


@pytest.mark.django_db(transaction=True)
def test_dispatchers_interleaved_on_one_connection_send_each_touch_once():
    """Alternating small batches of two "workers" never share a touch.

    The sequential variant of the thread test below, for SQLite, which
    takes one writer at a time.
    """
    due_enrollments(300)

    # When two dispatchers take turns with batches of 40 until nothing is due
    results = []
    while not results or results[-1].claimed or results[-2].claimed:
        results.append(dispatch_due_touches(now=NOW, batch_size=40))

    # Then the 300 first steps went out once each
    assert sum(r.sent for r in results) == 300
    assert_each_sent_once(300)
    assert len({m.to[0] for m in mail.outbox}) == 300


@pytest.mark.django_db(transaction=True)
def test_two_threaded_dispatchers_on_postgresql_send_2000_touches_once():
    """Two dispatchers in threads over 2,000 due enrollments: each sent once."""
    if connection.vendor != "postgresql":
        pytest.skip("needs concurrent writers; the interleaved test covers SQLite")
    due_enrollments(2000)
    start = threading.Barrier(2)
    results = {0: [], 1: []}

    def worker(number):
        try:
            start.wait()
            while True:
                result = dispatch_due_touches(now=NOW, batch_size=100)
                results[number].append(result)
                if not result.claimed:
                    break
        finally:
            connection.close()

    # When two dispatchers drain the queue at the same time
    threads = [threading.Thread(target=worker, args=(n,)) for n in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    # Then both did work, and every touch went out exactly once
    sent = {n: sum(r.sent for r in rs) for n, rs in results.items()}
    assert sent[0] + sent[1] == 2000
    assert sent[0] > 0 and sent[1] > 0
    assert_each_sent_once(2000)
    assert Touch.objects.count() == 2000
    assert len({m.to[0] for m in mail.outbox}) == 2000
