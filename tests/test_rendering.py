"""What an email carries: variant text, content item, unsubscribe link and headers."""

import datetime as dt

import pytest
from django.core import mail
from django.test import Client

from nurture.channels import EmailChannel
from nurture.models import ContentItem, StepVariant, Touch
from nurture.services.content import offered_detail
from nurture.services.rendering import render_step_email
from nurture.services.unsubscribe import (
    InvalidToken,
    UnsubscribeLink,
    UnsubscribeLinks,
    make_token,
    read_token,
    unsubscribe_url,
)
from tests.factories import ContactFactory, StepFactory, TouchFactory

pytestmark = pytest.mark.django_db

NOW = dt.datetime(2025, 3, 3, 10, 0, tzinfo=dt.UTC)

CONTENT_BODY = (
    "{% if content %}Read {{ content.title }}: {{ content.url }}"
    "{% else %}Reply and I will send our best guide.{% endif %}"
)


def guide(title="Career guide"):
    return ContentItem.objects.create(
        title=title, url="https://example.com/guide", kind=ContentItem.Kind.GUIDE,
        buyer_stage=ContentItem.BuyerStage.AWARENESS,
    )  # fmt: skip


def test_every_email_has_a_visible_unsubscribe_link_and_address(settings):
    """Text and HTML both show the postal address and a working unsubscribe link."""
    settings.NURTURE_SITE_URL = "https://nurture.example.com"
    settings.NURTURE_SENDER_ADDRESS = "Acme Ltd, 2 Test Road, Leeds"
    contact = ContactFactory()

    rendered = render_step_email(StepFactory(), contact)

    assert "Acme Ltd, 2 Test Road, Leeds" in rendered.text
    assert "Unsubscribe: https://nurture.example.com/u/" in rendered.text
    assert 'href="https://nurture.example.com/u/' in rendered.html
    url = rendered.text.split("Unsubscribe: ")[1].split()[0]
    path = url.removeprefix("https://nurture.example.com")
    assert Client().get(path).status_code == 200


def test_the_message_has_one_click_unsubscribe_headers():
    """RFC 8058: List-Unsubscribe with the https link and List-Unsubscribe-Post."""
    touch = TouchFactory(status=Touch.Status.SENDING)

    EmailChannel(now=NOW).send([touch])

    headers = mail.outbox[0].extra_headers
    assert headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    link = headers["List-Unsubscribe"]
    assert link.startswith("<http") and "/u/" in link and link.endswith("/>")
    assert link[1:-1] in mail.outbox[0].body


def test_a_mailto_entry_is_added_when_configured(settings):
    """With NURTURE_UNSUBSCRIBE_MAILTO the header also offers a mailto: target."""
    settings.NURTURE_UNSUBSCRIBE_MAILTO = "unsubscribe@example.com"
    touch = TouchFactory(status=Touch.Status.SENDING)

    EmailChannel(now=NOW).send([touch])

    link = mail.outbox[0].extra_headers["List-Unsubscribe"]
    assert ", <mailto:unsubscribe@example.com?subject=unsubscribe>" in link


def test_the_touchs_variant_supplies_subject_and_body():
    """A touch planned with variant B reads B's subject and body."""
    touch = TouchFactory(status=Touch.Status.SENDING)
    variant = StepVariant.objects.create(
        step=touch.step, label="B", subject="Variant B for {{ greeting_name }}",
        body="Body of B",
    )  # fmt: skip
    touch.variant = variant
    touch.save()

    EmailChannel(now=NOW).send([touch])

    message = mail.outbox[0]
    assert message.subject == f"Variant B for {touch.contact.first_name}"
    assert message.body.startswith("Body of B")


def test_the_next_content_item_is_offered_and_recorded():
    """A content-aware step names the item and the touch records the offer."""
    item = guide()
    touch = TouchFactory(status=Touch.Status.SENDING, step__body=CONTENT_BODY)

    results = EmailChannel(now=NOW).send([touch])

    assert "Read Career guide: https://example.com/guide" in mail.outbox[0].body
    assert results[touch.pk].detail == offered_detail(item)


def test_without_a_fitting_item_the_fallback_text_is_used():
    """No item for the stage: the template's fallback, and no offer recorded."""
    touch = TouchFactory(status=Touch.Status.SENDING, step__body=CONTENT_BODY)

    results = EmailChannel(now=NOW).send([touch])

    assert mail.outbox[0].body.startswith("Reply and I will send our best guide.")
    assert results[touch.pk].detail == ""


def test_steps_that_ignore_content_cost_no_content_queries(django_assert_num_queries):
    """A batch whose templates never mention content reads no content tables."""
    guide()
    touches = [TouchFactory(status=Touch.Status.SENDING) for _ in range(3)]

    with django_assert_num_queries(0):
        EmailChannel(now=NOW).send(touches)

    assert len(mail.outbox) == 3


def test_batch_links_are_the_same_signed_links_unsubscribe_url_makes(
    settings, monkeypatch
):
    """The batch's faster links equal unsubscribe_url's, token for token.

    So they are as opaque and as signed, read back by read_token, and
    expire after NURTURE_UNSUBSCRIBE_MAX_AGE_DAYS like every other link.
    """
    settings.NURTURE_SITE_URL = "https://nurture.example.com/"
    issued = dt.datetime(2025, 1, 1, tzinfo=dt.UTC).timestamp()
    monkeypatch.setattr("time.time", lambda: issued)
    links = UnsubscribeLinks()
    token = links.token(42, 7)

    assert links.url(42, 7) == unsubscribe_url(42, 7)
    assert links.url(42) == unsubscribe_url(42)
    assert read_token(links.token(42, 7)) == UnsubscribeLink(42, 7)

    settings.NURTURE_UNSUBSCRIBE_MAX_AGE_DAYS = 60
    monkeypatch.setattr("time.time", lambda: issued + 61 * 86400)
    with pytest.raises(InvalidToken):
        read_token(token)


def test_a_tampered_batch_token_is_refused():
    """Changing the ids inside a batch token breaks its signature."""
    token = UnsubscribeLinks().token(42, 7)
    forged = token.replace(token.split(":")[0], make_token(43, 7).split(":")[0])

    with pytest.raises(InvalidToken):
        read_token(forged)


def test_a_template_cannot_leak_a_variable_from_subject_into_body():
    """What the subject template sets is gone when the body renders."""
    step = StepFactory(
        subject="{% firstof 'leaked' as marker %}Hello",
        body="[{{ marker }}]",
    )

    rendered = render_step_email(step, ContactFactory())

    assert rendered.subject == "Hello"
    assert rendered.text.startswith("[]")
    assert "[]" in rendered.html
