"""The dispatcher: touches go out once, in order, in the window, to the right rep."""

import csv
import datetime as dt
import smtplib
import threading

import pytest
from django.core import mail
from django.core.mail.backends.locmem import EmailBackend
from django.db import connection
from django.test.utils import CaptureQueriesContext

from nurture.channels import Delivery, touch_message_id
from nurture.models import Channel, Enrollment, Step, Task, Touch
from nurture.services.dispatch import (
    UNKNOWN_OUTCOME,
    claim_due_enrollments,
    dispatch_due_touches,
)
from tests.factories import (
    AccountFactory,
    CadenceFactory,
    ContactFactory,
    EnrollmentFactory,
    RepFactory,
    RoutingRuleFactory,
    StepFactory,
    TouchFactory,
    UserFactory,
)

pytestmark = pytest.mark.django_db

# A Monday morning in UTC.
NOW = dt.datetime(2025, 3, 3, 10, 0, tzinfo=dt.UTC)
CLAIM = dt.timedelta(seconds=300)


class RefusingBackend(EmailBackend):
    """Accept mail like locmem, but refuse recipients whose address says so."""

    def send_messages(self, messages):
        for message in messages:
            if message.to[0].startswith("refuse"):
                raise smtplib.SMTPRecipientsRefused({message.to[0]: (550, b"no")})
        return super().send_messages(messages)


def enroll(contact=None, *, channels=("email",), wait_days=(0,), **cadence_fields):
    """Enroll a contact in a new cadence with one step per channel, due NOW."""
    cadence = CadenceFactory(**cadence_fields)
    for position, channel in enumerate(channels, start=1):
        StepFactory(
            cadence=cadence,
            position=position,
            channel=channel,
            wait_amount=wait_days[position - 1] if position <= len(wait_days) else 0,
            task_instructions=f"Instructions for step {position}",
        )
    return EnrollmentFactory(
        contact=contact or ContactFactory(owner=UserFactory()),
        cadence=cadence,
        enrolled_at=NOW,
        next_due_at=NOW,
    )


def test_steps_run_in_order_and_each_waits_for_its_own_delay():
    """Step 2 runs only once its wait after step 1 is over, never before."""
    # Given an email step now, then a call two days later
    enrollment = enroll(channels=("email", "call"), wait_days=(0, 2))

    # When the dispatcher runs now, and again a day later
    first = dispatch_due_touches(now=NOW)
    early = dispatch_due_touches(now=NOW + dt.timedelta(days=1))

    # Then only the email went out, and the call waits for day two
    assert (first.sent, early.claimed) == (1, 0)
    enrollment.refresh_from_db()
    assert enrollment.next_position == 2
    assert enrollment.next_due_at == NOW + dt.timedelta(days=2)
    assert not Task.objects.exists()

    # When day two comes, the call task is created
    later = dispatch_due_touches(now=NOW + dt.timedelta(days=2))
    assert later.tasks_created == 1
    steps = Touch.objects.order_by("step__position").values_list(
        "step__position", "status"
    )
    assert list(steps) == [(1, Touch.Status.SENT), (2, Touch.Status.TASK_CREATED)]


def test_a_call_step_creates_a_task_for_the_contacts_owner():
    """A call step becomes an open call task, due now, for the contact's owner."""
    owner = UserFactory()
    contact = ContactFactory(first_name="Ada", last_name="Lovelace", owner=owner)
    enrollment = enroll(contact, channels=("call",))

    result = dispatch_due_touches(now=NOW)

    task = Task.objects.get()
    assert result.tasks_created == 1
    assert task.assignee == owner
    assert task.type == Task.Type.CALL
    assert task.title == "Call Ada Lovelace"
    assert task.instructions == "Instructions for step 1"
    assert task.due_at == NOW
    assert task.touch.enrollment == enrollment
    assert task.touch.status == Touch.Status.TASK_CREATED


def test_an_ownerless_contact_is_routed_before_its_task_is_created():
    """A task for a contact without an owner goes to the rep routing picks."""
    rep = RepFactory()
    RoutingRuleFactory(rep=rep)  # blank field: matches every contact
    enroll(ContactFactory(owner=None), channels=("linkedin",))

    dispatch_due_touches(now=NOW)

    task = Task.objects.get()
    assert task.assignee == rep.user
    assert task.contact.owner == rep.user


def test_an_email_step_sends_one_message_with_a_stable_message_id():
    """One email goes out, and its Message-ID is the one stored on the touch."""
    contact = ContactFactory(email="ada@example.com", first_name="Ada")
    enroll(contact)

    result = dispatch_due_touches(now=NOW)

    touch = Touch.objects.get()
    assert result.sent == 1
    assert len(mail.outbox) == 1
    message = mail.outbox[0]
    assert message.to == ["ada@example.com"]
    assert message.subject == "Hello Ada"
    assert message.extra_headers["Message-ID"] == touch.message_id
    assert touch.message_id == touch_message_id(touch.pk)
    assert touch.message_id.startswith(f"<touch-{touch.pk}.")
    assert (touch.status, touch.sent_at, touch.attempts) == (Touch.Status.SENT, NOW, 1)


def test_do_not_email_skips_the_email_and_says_why_on_the_touch():
    """A do-not-email contact gets no email; the touch records the skip."""
    enrollment = enroll(ContactFactory(do_not_email=True), channels=("email", "call"))

    result = dispatch_due_touches(now=NOW)

    touch = Touch.objects.get()
    assert result.skipped == 1
    assert mail.outbox == []
    assert (touch.status, touch.detail) == (Touch.Status.SKIPPED, "do not email")
    enrollment.refresh_from_db()
    assert enrollment.next_position == 2


@pytest.mark.parametrize(
    ("flags", "reason"),
    [
        ({"unsubscribed_at": NOW - dt.timedelta(hours=1)}, "unsubscribed"),
        ({"do_not_contact": True}, "do_not_contact"),
    ],
)
def test_an_unsubscribed_or_do_not_contact_contact_leaves_the_cadence(flags, reason):
    """Such a contact is exited with the reason, and gets no touch of any kind."""
    enrollment = enroll(ContactFactory(**flags), channels=("email", "call"))

    result = dispatch_due_touches(now=NOW)

    enrollment.refresh_from_db()
    assert result.exited == 1
    assert (enrollment.state, enrollment.exit_reason) == ("exited", reason)
    assert enrollment.ended_at == NOW
    assert not Touch.objects.exists()
    assert mail.outbox == []


def test_a_real_lead_without_email_or_phone_still_gets_call_and_linkedin_tasks(
    shared_data,
):
    """Leads.csv rows carry no email or phone; the rep still gets the tasks."""
    # Given the first lead of the real export, as an importer would store it
    path = shared_data / (
        "GnyaneshKanchetti2002__XEducation-LeadScoringCaseStudy/Leads.csv"
    )
    with path.open(newline="", encoding="utf-8") as handle:
        row = next(csv.DictReader(handle))
    owner = UserFactory()
    lead = ContactFactory(
        external_id=row["Prospect ID"],
        email="",
        phone="",
        first_name="",
        last_name="",
        do_not_email=row["Do Not Email"] == "Yes",
        do_not_call=row["Do Not Call"] == "Yes",
        owner=owner,
    )
    assert not lead.do_not_call
    enroll(lead, channels=("email", "call", "linkedin"))

    # When the three steps are dispatched
    results = [dispatch_due_touches(now=NOW) for _ in range(3)]

    # Then the email is skipped for want of an address, and both tasks exist
    assert [r.skipped for r in results] == [1, 0, 0]
    assert Touch.objects.get(channel=Channel.EMAIL).detail == "no email address"
    tasks = Task.objects.order_by("type")
    assert [(t.type, t.assignee) for t in tasks] == [
        (Task.Type.CALL, owner),
        (Task.Type.LINKEDIN, owner),
    ]
    assert tasks[0].title == f"Call {row['Prospect ID']}"


def test_do_not_call_skips_a_call_step_only():
    """A do-not-call contact's call step is skipped; LinkedIn still happens."""
    enroll(ContactFactory(do_not_call=True), channels=("call", "linkedin"))

    first = dispatch_due_touches(now=NOW)
    second = dispatch_due_touches(now=NOW)

    assert (first.skipped, second.tasks_created) == (1, 1)
    assert Task.objects.get().type == Task.Type.LINKEDIN


def test_the_enrollment_completes_after_its_last_step():
    """After the last step runs, the enrollment is completed and not due."""
    enrollment = enroll(channels=("email", "retargeting"))

    dispatch_due_touches(now=NOW)
    result = dispatch_due_touches(now=NOW)

    enrollment.refresh_from_db()
    assert result.completed_enrollments == 1
    assert (enrollment.state, enrollment.ended_at) == ("completed", NOW)
    assert (enrollment.next_due_at, enrollment.claimed_until) == (None, None)
    audience = Touch.objects.get(channel=Channel.RETARGETING)
    assert audience.status == "sent"
    assert "audience" in audience.detail


def test_dispatching_twice_at_the_same_moment_sends_nothing_twice():
    """A repeated run finds nothing due and sends no second message."""
    enroll(channels=("email", "email"), wait_days=(0, 1))

    dispatch_due_touches(now=NOW)
    again = dispatch_due_touches(now=NOW)

    assert (again.claimed, again.sent) == (0, 0)
    assert len(mail.outbox) == 1
    assert Touch.objects.count() == 1


def test_a_second_dispatcher_gets_nothing_while_the_claim_is_held():
    """Claimed enrollments are invisible to others until the claim expires."""
    # Given another dispatcher holds the enrollment
    enrollment = enroll()
    assert claim_due_enrollments(now=NOW, limit=10) == [enrollment.pk]

    # When a second dispatcher runs at the same moment
    result = dispatch_due_touches(now=NOW)

    # Then it claims nothing and sends nothing
    assert (result.claimed, result.sent) == (0, 0)
    assert mail.outbox == []
    # And once the claim has run out, the work is picked up
    later = dispatch_due_touches(now=NOW + CLAIM + dt.timedelta(seconds=1))
    assert later.sent == 1


def test_a_touch_left_sending_by_a_dead_worker_is_not_sent_again():
    """A touch stuck in "sending" after its claim ran out is failed, not resent."""
    # Given a worker that recorded the touch and died before marking it sent
    enrollment = enroll(channels=("email", "call"))
    step = enrollment.cadence.steps.get(position=1)
    Enrollment.objects.filter(pk=enrollment.pk).update(claimed_until=NOW + CLAIM)
    stuck = TouchFactory(
        enrollment=enrollment, step=step, status="sending", created_at=NOW
    )

    # When the next dispatcher runs after the claim expired
    later = NOW + CLAIM + dt.timedelta(seconds=1)
    dispatch_due_touches(now=later)

    # Then the touch is failed with an unknown outcome and nothing is resent
    stuck.refresh_from_db()
    assert (stuck.status, stuck.detail) == ("failed", UNKNOWN_OUTCOME)
    assert mail.outbox == []
    enrollment.refresh_from_db()
    assert enrollment.next_position == 2


def test_a_send_failure_neither_blocks_nor_resends_the_others(settings):
    """One refused message fails alone; the retry resends only that one."""
    settings.EMAIL_BACKEND = "tests.test_dispatch.RefusingBackend"
    enrollments = [
        enroll(ContactFactory(email=address))
        for address in ("a@example.com", "refuse@example.com", "b@example.com")
    ]

    # When the batch is dispatched
    result = dispatch_due_touches(now=NOW)

    # Then two went out, and the refused one is failed with the error
    assert (result.sent, result.failed) == (2, 1)
    assert sorted(m.to[0] for m in mail.outbox) == ["a@example.com", "b@example.com"]
    failed = Touch.objects.get(status="failed")
    assert failed.enrollment == enrollments[1]
    assert "SMTPRecipientsRefused" in failed.detail
    assert failed.attempts == 1

    # When the provider accepts again and the claim has expired
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    retry = dispatch_due_touches(now=NOW + CLAIM + dt.timedelta(seconds=1))

    # Then only the failed touch is sent, as its second attempt
    assert (retry.claimed, retry.sent) == (1, 1)
    assert mail.outbox[-1].to == ["refuse@example.com"]
    failed.refresh_from_db()
    assert (failed.status, failed.attempts) == ("sent", 2)
    assert Touch.objects.count() == 3


def test_a_send_that_keeps_failing_is_given_up_after_three_attempts(settings):
    """After three failures, 5 and 30 minutes apart, the cadence moves on."""
    settings.EMAIL_BACKEND = "tests.test_dispatch.RefusingBackend"
    enrollment = enroll(
        ContactFactory(email="refuse@example.com"), channels=("email", "call")
    )

    # Each retry runs exactly when its backoff is over
    for moment in (
        NOW,
        NOW + dt.timedelta(minutes=5),
        NOW + dt.timedelta(minutes=35),
    ):
        dispatch_due_touches(now=moment)

    touch = Touch.objects.get()
    assert (touch.status, touch.attempts) == ("failed", 3)
    assert touch.retry_at is None
    enrollment.refresh_from_db()
    assert enrollment.next_position == 2
    assert mail.outbox == []


def test_the_send_window_is_read_in_the_contacts_time_zone():
    """At 03:00 in Kolkata an email waits for 09:00 Kolkata time."""
    # Given a 09:00-17:00 weekday window and a contact in India
    window = {
        "send_window_start": dt.time(9),
        "send_window_end": dt.time(17),
        "send_weekdays": [1, 2, 3, 4, 5],
    }
    contact = ContactFactory(time_zone="Asia/Kolkata")
    enrollment = enroll(contact, **window)
    # Monday 21:30 UTC is Tuesday 03:00 in Kolkata (UTC+05:30)
    night = dt.datetime(2025, 3, 3, 21, 30, tzinfo=dt.UTC)

    # When the dispatcher runs in the contact's night
    result = dispatch_due_touches(now=night)

    # Then nothing is sent and the step waits for the window to open
    assert (result.deferred, result.sent) == (1, 0)
    enrollment.refresh_from_db()
    opening = dt.datetime(2025, 3, 4, 3, 30, tzinfo=dt.UTC)  # 09:00 IST
    assert enrollment.next_due_at == opening
    assert enrollment.claimed_until is None
    assert mail.outbox == []

    # When the window opens, the email goes out
    assert dispatch_due_touches(now=opening).sent == 1


def test_the_weekend_defers_to_monday_and_a_bad_zone_falls_back_to_default():
    """A Saturday run waits for Monday's opening; an unknown zone reads as UTC."""
    enrollment = enroll(
        # An unknown zone and no country: nothing left but the default
        ContactFactory(time_zone="Mars/Olympus_Mons", country=""),
        send_window_start=dt.time(8),
        send_window_end=dt.time(18),
        send_weekdays=[],  # empty: Monday to Friday
    )
    saturday = dt.datetime(2025, 3, 8, 12, 0, tzinfo=dt.UTC)

    dispatch_due_touches(now=saturday)

    enrollment.refresh_from_db()
    assert enrollment.next_due_at == dt.datetime(2025, 3, 10, 8, 0, tzinfo=dt.UTC)


def test_task_steps_are_created_outside_the_send_window():
    """The window holds back automated email only; a rep task is made any time."""
    enroll(
        ContactFactory(time_zone="Asia/Kolkata"),
        channels=("call",),
        send_window_start=dt.time(9),
        send_window_end=dt.time(17),
    )
    night = dt.datetime(2025, 3, 3, 21, 30, tzinfo=dt.UTC)

    assert dispatch_due_touches(now=night).tasks_created == 1


def test_the_query_count_does_not_grow_with_the_batch():
    """Batches of 10 and 100 run the same queries, bar bulk-insert chunks."""
    owner = UserFactory()
    email_cadence = CadenceFactory()
    call_cadence = CadenceFactory()
    for cadence, channel in ((email_cadence, "email"), (call_cadence, "call")):
        StepFactory(cadence=cadence, position=1, channel=channel)
        StepFactory(cadence=cadence, position=2, channel=channel, wait_amount=1)
    for index in range(110):
        EnrollmentFactory(
            contact=ContactFactory(owner=owner),
            cadence=email_cadence if index % 2 else call_cadence,
            enrolled_at=NOW,
            next_due_at=NOW,
        )

    def queries(batch_size):
        with CaptureQueriesContext(connection) as captured:
            result = dispatch_due_touches(now=NOW, batch_size=batch_size)
        assert result.claimed == batch_size
        statements = [q["sql"] for q in captured.captured_queries]
        # executemany is logged as "N times: INSERT ..."
        inserts = [s for s in statements if "INSERT" in s.split(" (")[0]]
        return len(statements) - len(inserts), len(inserts)

    small_other, small_inserts = queries(10)
    large_other, large_inserts = queries(100)

    assert small_other == large_other
    # One INSERT (an executemany) for touches, and one for tasks split only
    # by the database's limit on parameters per statement.
    assert small_inserts == 2
    assert large_inserts <= 3
    assert Step.objects.count() == 4


@pytest.mark.django_db(transaction=True)
def test_two_dispatchers_running_at_once_never_share_an_enrollment():
    """Concurrent dispatchers split the due work; every touch goes out once."""
    # Given forty due enrollments
    cadence = CadenceFactory()
    StepFactory(cadence=cadence, position=1)
    for _ in range(40):
        EnrollmentFactory(cadence=cadence, next_due_at=NOW)
    start = threading.Barrier(2)
    results = []

    def worker():
        try:
            start.wait()
            results.append(dispatch_due_touches(now=NOW, batch_size=40))
        finally:
            connection.close()

    # When two dispatchers start at the same moment in separate connections
    threads = [threading.Thread(target=worker) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    # Then each enrollment was claimed and mailed exactly once
    assert sum(r.claimed for r in results) == 40
    assert sum(r.sent for r in results) == 40
    assert len(mail.outbox) == 40
    assert Touch.objects.count() == 40
    assert len({m.to[0] for m in mail.outbox}) == 40


class RecordingChannel:
    """A channel that notes what each touch carries, and the queries it cost."""

    seen: list = []

    def __init__(self, *, now):
        self.now = now

    def send(self, touches):
        with CaptureQueriesContext(connection) as captured:
            RecordingChannel.seen = [
                (
                    touch.contact.email,
                    touch.contact.owner.email if touch.contact.owner else None,
                    touch.contact.account.name if touch.contact.account else None,
                    touch.enrollment.cadence.name,
                    touch.step.position,
                    touch.attempts,
                )
                for touch in touches
            ]
        RecordingChannel.queries = len(captured.captured_queries)
        return {touch.pk: Delivery(Touch.Status.SENT) for touch in touches}


def test_a_channel_gets_each_touch_with_its_contact_owner_account_and_cadence(
    settings,
):
    """A channel reads a touch's contact, owner, account and cadence for free."""
    # Given one contact with an owner and an account, and one with neither
    settings.NURTURE_CHANNELS = {"email": "tests.test_dispatch.RecordingChannel"}
    owner = UserFactory(email="owner@example.com")
    account = AccountFactory(name="Acme")
    first = enroll(ContactFactory(email="a@example.com", owner=owner, account=account))
    enroll(ContactFactory(email="b@example.com"), name="Second")

    # When both are dispatched
    result = dispatch_due_touches(now=NOW)

    # Then the channel saw the right values for each, without a query
    assert result.sent == 2
    assert sorted(RecordingChannel.seen) == [
        ("a@example.com", "owner@example.com", "Acme", first.cadence.name, 1, 1),
        ("b@example.com", None, None, "Second", 1, 1),
    ]
    assert RecordingChannel.queries == 0
