"""Provider webhooks: real Mailgun, Postmark and SendGrid payloads land once each."""

import base64
import copy
import datetime as dt
import json
import smtplib

import pytest
from django.core import mail
from django.core.mail.backends.locmem import EmailBackend
from rest_framework.test import APIClient

from crm.models import EngagementEvent
from nurture.channels import touch_message_id
from nurture.models import Enrollment, Touch
from nurture.services.dispatch import dispatch_due_touches
from tests.factories import (
    CadenceFactory,
    ContactFactory,
    EnrollmentFactory,
    StepFactory,
    TouchFactory,
)

pytestmark = pytest.mark.django_db

E = EngagementEvent.Type
# The signing key Symfony's Mailgun tests signed these fixtures with.
MAILGUN_KEY = "key-0p6mqbf74lb20gzq9f4dhpn9rg3zyk26"
TOKEN = "s3cret-hook-token"
NOW = dt.datetime(2025, 3, 3, 10, 0, tzinfo=dt.UTC)


@pytest.fixture(autouse=True)
def provider_keys(settings):
    settings.NURTURE_MAILGUN_SIGNING_KEY = MAILGUN_KEY
    settings.NURTURE_POSTMARK_WEBHOOK_TOKEN = TOKEN
    settings.NURTURE_SENDGRID_WEBHOOK_TOKEN = TOKEN


@pytest.fixture
def payload(shared_data):
    def load(provider: str, name: str):
        path = shared_data / f"symfony__{provider}-mailer" / f"{name}.json"
        return json.loads(path.read_text())

    return load


def post(provider: str, body, *, token: str | None = TOKEN, **extra):
    """Post a webhook body as the provider would, with the shared token."""
    url = f"/api/webhooks/esp/{provider}/"
    if token and provider != "mailgun":
        url += f"?token={token}"
    return APIClient().post(url, body, format="json", **extra)


def only_event(contact) -> EngagementEvent:
    return EngagementEvent.objects.get(contact=contact)


def email_touch(contact) -> Touch:
    """Return a sent email touch of ``contact`` carrying its Message-ID."""
    touch = TouchFactory(enrollment__contact=contact, sent_at=NOW)
    touch.message_id = touch_message_id(touch.pk)
    touch.save(update_fields=["message_id"])
    return touch


# Mailgun -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "type_", "properties"),
    [
        ("clicks", E.EMAIL_CLICK, {"event": "clicked"}),
        ("permanent_failure", E.EMAIL_BOUNCE, {"bounce_type": "hard", "code": 550}),
        ("temporary_failure", E.EMAIL_BOUNCE, {"bounce_type": "soft", "code": 452}),
        ("spam_complaints", E.OTHER, {"complaint": True}),
    ],
)
def test_mailgun_payloads_become_the_right_event(payload, name, type_, properties):
    """Each Mailgun fixture is stored once, for the recipient, as its type."""
    contact = ContactFactory(email="Alice@Example.com")
    body = payload("mailgun", name)

    response = post("mailgun", body)

    assert response.status_code == 200, response.content
    assert response.json()["created"] == 1
    event = only_event(contact)
    assert (event.type, event.source) == (type_, "mailgun")
    assert event.external_id == body["event-data"]["id"]
    assert properties.items() <= event.properties.items()
    assert event.occurred_at == dt.datetime.fromtimestamp(
        body["event-data"]["timestamp"], tz=dt.UTC
    )


def test_a_mailgun_permanent_failure_suppresses_and_exits(payload):
    """A 550 permanent failure marks the contact hard-bounced and ends cadences."""
    contact = ContactFactory(email="alice@example.com")
    enrollment = EnrollmentFactory(contact=contact)

    post("mailgun", payload("mailgun", "permanent_failure"))

    contact.refresh_from_db()
    enrollment.refresh_from_db()
    assert contact.hard_bounced_at is not None
    assert enrollment.exit_reason == Enrollment.ExitReason.BOUNCED


def test_a_mailgun_temporary_failure_does_not_suppress(payload):
    """A 452 over-quota failure is a soft bounce: the contact stays mailable."""
    contact = ContactFactory(email="alice@example.com")
    enrollment = EnrollmentFactory(contact=contact)

    post("mailgun", payload("mailgun", "temporary_failure"))

    contact.refresh_from_db()
    enrollment.refresh_from_db()
    assert contact.hard_bounced_at is None
    assert enrollment.state == Enrollment.State.ACTIVE


def test_a_mailgun_complaint_stops_email(payload):
    """A spam complaint sets complained_at and do_not_email, never unsubscribe."""
    contact = ContactFactory(email="alice@example.com")

    post("mailgun", payload("mailgun", "spam_complaints"))

    contact.refresh_from_db()
    assert contact.complained_at is not None
    assert contact.do_not_email is True
    assert contact.unsubscribed_at is None


def test_a_mailgun_click_with_our_message_id_stamps_the_touch(payload):
    """A click whose message-id header is the touch's stamps clicked and opened."""
    contact = ContactFactory(email="someone-else@example.com")
    touch = email_touch(contact)
    body = payload("mailgun", "clicks")
    body["event-data"]["message"]["headers"]["message-id"] = touch.message_id.strip(
        "<>"
    )

    post("mailgun", body)

    touch.refresh_from_db()
    assert touch.outcome == Touch.Outcome.CLICKED
    assert touch.opened_at == touch.clicked_at
    assert touch.clicked_at.year == 2018
    assert only_event(contact).properties["touch_id"] == touch.pk


def test_a_mailgun_delivery_confirms_our_touch_and_stores_no_event(payload):
    """Delivered records the provider's message id on the touch, nothing else."""
    contact = ContactFactory(email="alice@example.com")
    touch = email_touch(contact)
    body = payload("mailgun", "delivered_messages")
    body["event-data"]["message"]["headers"]["message-id"] = touch.message_id.strip(
        "<>"
    )

    response = post("mailgun", body)

    assert response.json()["delivered"] == 1
    touch.refresh_from_db()
    assert touch.provider_message_id == touch.message_id.strip("<>")
    assert not EngagementEvent.objects.exists()


def test_a_delivery_of_mail_we_did_not_send_is_ignored(payload):
    """A delivered event naming no touch of ours changes nothing and is 200."""
    ContactFactory(email="alice@example.com")

    response = post("mailgun", payload("mailgun", "delivered_messages"))

    assert response.status_code == 200
    assert response.json()["ignored"] == 1
    assert not EngagementEvent.objects.exists()


def test_a_mailgun_retry_is_a_duplicate(payload):
    """The same Mailgun event posted twice is stored once."""
    contact = ContactFactory(email="alice@example.com")
    body = payload("mailgun", "clicks")

    first = post("mailgun", body)
    again = post("mailgun", body)

    assert (first.json()["created"], again.json()["created"]) == (1, 0)
    assert again.json()["duplicates"] == 1
    assert EngagementEvent.objects.filter(contact=contact).count() == 1


def test_a_mailgun_post_with_a_wrong_signature_is_refused(payload):
    """A signature that does not match the key answers 403 and stores nothing."""
    ContactFactory(email="alice@example.com")
    body = payload("mailgun", "clicks")
    body["signature"]["signature"] = "0" * 64

    response = post("mailgun", body)

    assert response.status_code == 403
    assert not EngagementEvent.objects.exists()


def test_a_mailgun_post_signed_with_another_key_is_refused(payload, settings):
    """The fixture's genuine signature fails under a different signing key."""
    settings.NURTURE_MAILGUN_SIGNING_KEY = "key-another"
    ContactFactory(email="alice@example.com")

    response = post("mailgun", payload("mailgun", "clicks"))

    assert response.status_code == 403


def test_a_mailgun_post_without_a_signature_is_refused(payload):
    """No signature block answers 401."""
    body = payload("mailgun", "clicks")
    del body["signature"]

    response = post("mailgun", body)

    assert response.status_code == 401


def test_webhooks_refuse_everything_until_a_key_is_set(payload, settings):
    """Without a configured key, even a well-formed post is refused with 403."""
    settings.NURTURE_MAILGUN_SIGNING_KEY = ""
    settings.NURTURE_SENDGRID_WEBHOOK_TOKEN = ""
    ContactFactory(email="alice@example.com")

    mailgun = post("mailgun", payload("mailgun", "clicks"))
    sendgrid = post("sendgrid", payload("sendgrid", "webhook"))

    assert (mailgun.status_code, sendgrid.status_code) == (403, 403)
    assert "NURTURE_MAILGUN_SIGNING_KEY" in mailgun.json()["detail"]
    assert not EngagementEvent.objects.exists()


def test_a_mailgun_payload_without_event_id_names_the_field(payload):
    """A signed payload missing event-data.id answers 400 naming it."""
    ContactFactory(email="alice@example.com")
    body = payload("mailgun", "clicks")
    del body["event-data"]["id"]

    response = post("mailgun", body)

    assert response.status_code == 400
    assert "event-data.id" in response.json()


# Postmark ------------------------------------------------------------------


def test_a_postmark_open_stamps_the_touch_by_provider_id(payload):
    """An Open whose MessageID is the touch's provider id stamps opened_at."""
    contact = ContactFactory(email="john@example.com")
    touch = email_touch(contact)
    body = payload("postmark", "open")
    Touch.objects.filter(pk=touch.pk).update(provider_message_id=body["MessageID"])

    response = post("postmark", body)

    assert response.status_code == 200, response.content
    event = only_event(contact)
    assert (event.type, event.source) == (E.EMAIL_OPEN, "postmark")
    touch.refresh_from_db()
    assert touch.opened_at == dt.datetime(2022, 9, 2, 14, 30, 47, tzinfo=dt.UTC)
    assert touch.outcome == Touch.Outcome.OPENED


def test_a_postmark_hard_bounce_suppresses_the_recipient(payload):
    """A HardBounce is a hard email_bounce: hard_bounced_at is set."""
    contact = ContactFactory(email="john@example.com")

    post("postmark", payload("postmark", "bounce"))

    event = only_event(contact)
    assert event.type == E.EMAIL_BOUNCE
    assert event.properties["bounce_type"] == "hard"
    assert event.external_id == "Bounce:42"
    contact.refresh_from_db()
    assert contact.hard_bounced_at is not None


def test_a_postmark_suppression_unsubscribes(payload):
    """A SubscriptionChange with SuppressSending unsubscribes the recipient."""
    contact = ContactFactory(email="john@example.com")
    enrollment = EnrollmentFactory(contact=contact)

    post("postmark", payload("postmark", "subscription_change"))

    assert only_event(contact).type == E.UNSUBSCRIBE
    contact.refresh_from_db()
    enrollment.refresh_from_db()
    assert contact.unsubscribed_at is not None
    assert enrollment.exit_reason == Enrollment.ExitReason.UNSUBSCRIBED


def test_a_postmark_resubscription_changes_nothing(payload):
    """SuppressSending false is not an unsubscribe; it is ignored."""
    contact = ContactFactory(email="john@example.com")
    body = payload("postmark", "subscription_change")
    body["SuppressSending"] = False

    response = post("postmark", body)

    assert response.json()["ignored"] == 1
    contact.refresh_from_db()
    assert contact.unsubscribed_at is None


def test_a_postmark_retry_is_a_duplicate(payload):
    """The same Open posted twice is stored once."""
    contact = ContactFactory(email="john@example.com")
    body = payload("postmark", "open")

    post("postmark", body)
    again = post("postmark", body)

    assert again.json()["duplicates"] == 1
    assert EngagementEvent.objects.filter(contact=contact).count() == 1


@pytest.mark.parametrize(
    ("credentials", "expected"),
    [
        ({"HTTP_X_NURTURE_WEBHOOK_TOKEN": TOKEN}, 200),
        (
            {
                "HTTP_AUTHORIZATION": "Basic "
                + base64.b64encode(b"pm:" + TOKEN.encode()).decode()
            },
            200,
        ),
        (
            {"HTTP_AUTHORIZATION": "Basic " + base64.b64encode(b"pm:wrong").decode()},
            403,
        ),
        ({"HTTP_X_NURTURE_WEBHOOK_TOKEN": "wrong"}, 403),
        ({}, 401),
    ],
)
def test_postmark_token_checks(payload, credentials, expected):
    """The token may come as a header or basic auth; wrong is 403, none 401."""
    ContactFactory(email="john@example.com")

    response = post("postmark", payload("postmark", "open"), token=None, **credentials)

    assert response.status_code == expected
    assert EngagementEvent.objects.exists() == (expected == 200)


def test_a_postmark_payload_without_a_time_names_the_field(payload):
    """An Open without ReceivedAt answers 400 naming ReceivedAt."""
    ContactFactory(email="john@example.com")
    body = payload("postmark", "open")
    del body["ReceivedAt"]

    response = post("postmark", body)

    assert response.status_code == 400
    assert "ReceivedAt" in response.json()


# SendGrid ------------------------------------------------------------------


def test_a_sendgrid_dropped_bounced_address_is_a_hard_bounce(payload):
    """'dropped' with reason Bounced Address is a hard bounce with its reason."""
    contact = ContactFactory(email="hello@world.com")
    body = payload("sendgrid", "webhook")

    response = post("sendgrid", body)

    assert response.status_code == 200, response.content
    event = only_event(contact)
    assert event.type == E.EMAIL_BOUNCE
    assert event.source == "sendgrid"
    assert event.external_id == body[0]["sg_event_id"]
    assert event.properties["bounce_type"] == "hard"
    assert event.properties["reason"] == "Bounced Address"
    contact.refresh_from_db()
    assert contact.hard_bounced_at is not None


def test_a_sendgrid_drop_for_another_reason_is_soft(payload):
    """A drop that does not say bounced or invalid does not suppress."""
    contact = ContactFactory(email="hello@world.com")
    body = payload("sendgrid", "webhook")
    body[0]["reason"] = "Spam Content"

    post("sendgrid", body)

    assert only_event(contact).properties["bounce_type"] == "soft"
    contact.refresh_from_db()
    assert contact.hard_bounced_at is None


def test_a_sendgrid_batch_keeps_the_good_items(payload):
    """Bad items of an array are listed by index; the good ones are stored."""
    contact = ContactFactory(email="hello@world.com")
    good = payload("sendgrid", "webhook")[0]
    no_id = {**copy.deepcopy(good), "sg_event_id": ""}
    bad_time = {**copy.deepcopy(good), "sg_event_id": "x2", "timestamp": "soon"}
    opened = {**copy.deepcopy(good), "event": "open", "sg_event_id": "x3"}

    response = post("sendgrid", [no_id, good, bad_time, "junk", opened])

    body = response.json()
    assert response.status_code == 200
    assert body["created"] == 2
    assert [(e["index"], e["field"]) for e in body["errors"]] == [
        (0, "sg_event_id"),
        (2, "timestamp"),
        (3, "event"),
    ]
    assert EngagementEvent.objects.filter(contact=contact).count() == 2


def test_a_sendgrid_open_finds_the_touch_by_smtp_id(payload):
    """smtp-id carrying our Message-ID stamps the touch whoever the recipient."""
    contact = ContactFactory(email="renamed@example.com")
    touch = email_touch(contact)
    item = {
        **payload("sendgrid", "webhook")[0],
        "event": "open",
        "smtp-id": touch.message_id,
    }

    post("sendgrid", [item])

    touch.refresh_from_db()
    assert touch.outcome == Touch.Outcome.OPENED
    assert only_event(contact).type == E.EMAIL_OPEN


def test_a_sendgrid_post_with_a_wrong_token_is_refused(payload):
    """A wrong ?token= answers 403."""
    response = post("sendgrid", payload("sendgrid", "webhook"), token="nope")

    assert response.status_code == 403


def test_a_non_list_sendgrid_body_is_a_400():
    """SendGrid posts arrays; an object answers 400 naming events."""
    response = post("sendgrid", {"event": "open"})

    assert response.status_code == 400
    assert "events" in response.json()


def test_an_unknown_provider_is_404():
    """Only mailgun, postmark and sendgrid have an endpoint."""
    response = post("sparkpost", {}, token=None)

    assert response.status_code == 404


# Refused recipients at send time -------------------------------------------


class OneRefusingBackend(EmailBackend):
    """Deliver like locmem but refuse one address with a permanent 550."""

    def send_messages(self, messages):
        for message in messages:
            if message.to == ["gone@example.com"]:
                raise smtplib.SMTPRecipientsRefused(
                    {"gone@example.com": (550, b"5.1.1 no such user")}
                )
        return super().send_messages(messages)


def test_one_refused_recipient_fails_alone_and_is_not_resent_to_others(settings):
    """The refused touch is failed; the rest of the batch goes out exactly once."""
    settings.EMAIL_BACKEND = "tests.test_esp_webhooks.OneRefusingBackend"
    cadence = CadenceFactory()
    StepFactory(cadence=cadence, position=1)
    addresses = ["a@example.com", "gone@example.com", "b@example.com"]
    for address in addresses:
        EnrollmentFactory(
            contact=ContactFactory(email=address),
            cadence=cadence,
            enrolled_at=NOW,
            next_due_at=NOW,
        )

    # When the batch is dispatched, and again after the retry wait
    first = dispatch_due_touches(now=NOW)
    dispatch_due_touches(now=NOW + dt.timedelta(hours=1))

    # Then the two others got one email each, and the refused touch failed
    assert (first.sent, first.failed) == (2, 1)
    assert sorted(m.to[0] for m in mail.outbox) == ["a@example.com", "b@example.com"]
    refused = Touch.objects.get(contact__email="gone@example.com")
    assert refused.status == Touch.Status.FAILED
    assert "550" in refused.detail
    assert Touch.objects.filter(status=Touch.Status.SENT).count() == 2
