"""One-click unsubscribe (RFC 8058): signed links, GET confirms, POST acts."""

import datetime as dt

import pytest
from django.core import signing
from django.test import Client
from django.urls import reverse

from crm.models import EngagementEvent
from nurture.models import Enrollment
from nurture.services.engagement import ingest_events
from nurture.services.unsubscribe import (
    InvalidToken,
    make_token,
    read_token,
    unsubscribe_url,
)
from tests.factories import ContactFactory, EnrollmentFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def client():
    # A mail client has no session and no CSRF cookie; checks stay on.
    return Client(enforce_csrf_checks=True)


def link_path(contact, touch_id=None):
    return reverse("nurture:unsubscribe", args=[make_token(contact.pk, touch_id)])


def test_get_shows_a_confirmation_and_changes_nothing(client):
    """Opening the link (or a scanner following it) only asks for confirmation."""
    contact = ContactFactory()
    enrollment = EnrollmentFactory(contact=contact)

    response = client.get(link_path(contact))

    assert response.status_code == 200
    assert b'<form method="post">' in response.content
    contact.refresh_from_db()
    enrollment.refresh_from_db()
    assert contact.unsubscribed_at is None
    assert enrollment.state == Enrollment.State.ACTIVE
    assert not EngagementEvent.objects.exists()


def test_one_click_post_without_cookie_unsubscribes_and_exits(client):
    """The RFC 8058 POST, with no login or CSRF token, unsubscribes and answers 2xx."""
    contact = ContactFactory()
    enrollment = EnrollmentFactory(contact=contact)

    response = client.post(
        link_path(contact, touch_id=77),
        data="List-Unsubscribe=One-Click",
        content_type="application/x-www-form-urlencoded",
    )

    assert response.status_code == 200
    contact.refresh_from_db()
    enrollment.refresh_from_db()
    assert contact.unsubscribed_at is not None
    assert enrollment.state == Enrollment.State.EXITED
    assert enrollment.exit_reason == Enrollment.ExitReason.UNSUBSCRIBED
    event = EngagementEvent.objects.get()
    assert (event.contact_id, event.type) == (contact.pk, "unsubscribe")
    assert event.properties == {"via": "link", "touch_id": 77}


def test_unsubscribing_twice_is_harmless(client):
    """A second POST answers 2xx and keeps the first time and the one event."""
    contact = ContactFactory()
    path = link_path(contact)
    client.post(path)
    contact.refresh_from_db()
    first_time = contact.unsubscribed_at

    response = client.post(path)

    assert response.status_code == 200
    contact.refresh_from_db()
    assert contact.unsubscribed_at == first_time
    assert EngagementEvent.objects.count() == 1


@pytest.mark.parametrize("method", ["get", "post"])
def test_a_tampered_token_is_refused_and_changes_nothing(client, method):
    """Changing one character of the token gives a 400 page, not an unsubscribe."""
    contact = ContactFactory()
    token = make_token(contact.pk)
    forged = token[:-1] + ("A" if token[-1] != "A" else "B")

    response = getattr(client, method)(reverse("nurture:unsubscribe", args=[forged]))

    assert response.status_code == 400
    contact.refresh_from_db()
    assert contact.unsubscribed_at is None


def test_a_token_for_another_purpose_is_refused():
    """A value signed with the same key but another salt is not a link."""
    with pytest.raises(InvalidToken):
        read_token(signing.dumps([1]))


def test_a_token_works_for_the_configured_age_and_not_after(settings, monkeypatch):
    """Links keep working for at least 60 days (365 by default), then expire."""
    contact = ContactFactory()
    issued = dt.datetime(2025, 1, 1, tzinfo=dt.UTC).timestamp()
    monkeypatch.setattr("time.time", lambda: issued)
    token = make_token(contact.pk, 5)

    monkeypatch.setattr("time.time", lambda: issued + 364 * 86400)
    assert read_token(token).contact_id == contact.pk
    assert read_token(token).touch_id == 5

    settings.NURTURE_UNSUBSCRIBE_MAX_AGE_DAYS = 60
    monkeypatch.setattr("time.time", lambda: issued + 61 * 86400)
    with pytest.raises(InvalidToken):
        read_token(token)


def test_the_url_is_absolute_and_does_not_show_the_email(settings):
    """The link uses the site URL and never carries the address in clear."""
    settings.NURTURE_SITE_URL = "https://nurture.example.com/"
    contact = ContactFactory(email="ada@example.com")

    url = unsubscribe_url(contact.pk)

    assert url.startswith("https://nurture.example.com/u/")
    assert url.endswith("/")
    assert "ada" not in url


def test_a_deleted_contact_gets_a_harmless_answer(client):
    """A link to a contact deleted since answers 2xx and does nothing."""
    contact = ContactFactory()
    path = link_path(contact)
    contact.delete()

    assert client.post(path).status_code == 200
    assert not EngagementEvent.objects.exists()


def test_a_complaint_is_recorded_as_a_complaint_not_an_unsubscribe():
    """A spam complaint stamps complained_at and exits with reason "complained"."""
    now = dt.datetime(2025, 3, 3, 10, 0, tzinfo=dt.UTC)
    contact = ContactFactory()
    enrollment = EnrollmentFactory(contact=contact)

    ingest_events(
        [{"contact": contact, "type": "other", "occurred_at": now,
          "properties": {"complaint": True}}],
        now=now,
    )  # fmt: skip

    contact.refresh_from_db()
    enrollment.refresh_from_db()
    assert contact.complained_at == now
    assert contact.unsubscribed_at is None
    assert enrollment.exit_reason == Enrollment.ExitReason.COMPLAINED


def test_head_is_answered_like_get_and_changes_nothing(client):
    """A link scanner's HEAD gets 200, like GET, and unsubscribes nobody."""
    contact = ContactFactory()

    response = client.head(link_path(contact))

    assert response.status_code == 200
    contact.refresh_from_db()
    assert contact.unsubscribed_at is None
