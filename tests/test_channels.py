"""Channels and rendering: what a contact receives and how channels are chosen."""

import datetime as dt

import pytest
from django.core import mail

from nurture.channels import (
    AudienceChannel,
    EmailChannel,
    NullChannel,
    TaskChannel,
    get_channel,
    touch_message_id,
    touch_message_id_expression,
)
from nurture.models import StepVariant, Touch
from nurture.services.dispatch import dispatch_due_touches
from nurture.services.rendering import render_step_email
from nurture.services.variants import choose_variant
from nurture.tasks import dispatch_due_touches_task
from tests.factories import (
    AccountFactory,
    CadenceFactory,
    ContactFactory,
    EnrollmentFactory,
    StepFactory,
    TouchFactory,
    UserFactory,
)

pytestmark = pytest.mark.django_db

NOW = dt.datetime(2025, 3, 3, 10, 0, tzinfo=dt.UTC)


def test_a_missing_first_name_is_greeted_as_there():
    """A lead without a first name reads "Hi there,", never "Hi ,"."""
    step = StepFactory(body="Hi {{ greeting_name }},\nThanks for visiting.")

    nameless = render_step_email(step, ContactFactory(first_name=""))
    named = render_step_email(step, ContactFactory(first_name="Ada"))

    assert nameless.text.startswith("Hi there,\n")
    assert "Hi ," not in nameless.text
    assert "Hi ," not in nameless.html
    assert named.text.startswith("Hi Ada,\n")


def test_every_email_carries_the_sender_and_postal_address(settings):
    """The base layout signs with the sender and prints the postal address."""
    settings.NURTURE_SENDER_ADDRESS = "Acme Ltd, 2 Test Road, Leeds"
    owner = UserFactory(first_name="Grace", last_name="Hopper")
    step = StepFactory(
        subject="{{ account.name }}\nnews", body="From {{ sender }} to {{ contact }}"
    )
    contact = ContactFactory(
        first_name="Ada", last_name="Byron", account=AccountFactory(name="Initech")
    )

    rendered = render_step_email(step, contact, sender=owner)

    assert rendered.subject == "Initech news"
    assert "From Grace Hopper to Ada Byron" in rendered.text
    assert "Acme Ltd, 2 Test Road, Leeds" in rendered.text
    assert "Acme Ltd, 2 Test Road, Leeds" in rendered.html


def test_contact_fields_are_escaped_in_html_but_not_in_text():
    """Markup typed into a contact field is shown as text in the HTML part."""
    step = StepFactory(body="Hi {{ contact.first_name }}")
    contact = ContactFactory(first_name="<b>Bo</b> & Co")

    rendered = render_step_email(step, contact)

    assert "Hi <b>Bo</b> & Co" in rendered.text
    assert "&lt;b&gt;Bo&lt;/b&gt; &amp; Co" in rendered.html
    assert "<b>Bo</b>" not in rendered.html


def test_without_owner_or_cadence_sender_the_team_signs(settings):
    """An email for an ownerless contact in a sender-less cadence is from the team."""
    settings.NURTURE_SENDER_NAME = "The Demo team"
    cadence = CadenceFactory(sender=None)
    StepFactory(cadence=cadence, position=1, body="Regards, {{ sender }}")
    EnrollmentFactory(
        contact=ContactFactory(owner=None), cadence=cadence, next_due_at=NOW
    )

    dispatch_due_touches(now=NOW)

    message = mail.outbox[0]
    assert "Regards, The Demo team" in message.body
    assert message.from_email.startswith("The Demo team <")
    assert message.reply_to == []


def test_the_owner_signs_and_receives_replies():
    """An owned contact's email is from the owner's name; replies reach the owner."""
    owner = UserFactory(first_name="Grace", last_name="Hopper", email="g@corp.test")
    touch = TouchFactory(
        enrollment__contact=ContactFactory(owner=owner), status="sending"
    )

    results = EmailChannel(now=NOW).send([touch])

    assert results[touch.pk].status == Touch.Status.SENT
    message = mail.outbox[0]
    assert message.from_email.startswith("Grace Hopper <")
    assert message.reply_to == ["g@corp.test"]
    html = message.alternatives[0]
    assert html.mimetype == "text/html"


def test_a_template_error_fails_only_its_own_touch():
    """A step whose body cannot render fails; the other touches still go out."""
    good = TouchFactory(status="sending")
    bad = TouchFactory(status="sending", step__body="{% if %}")

    results = EmailChannel(now=NOW).send([good, bad])

    assert results[good.pk].status == Touch.Status.SENT
    assert results[bad.pk].status == Touch.Status.FAILED
    assert "TemplateSyntaxError" in results[bad.pk].detail
    assert len(mail.outbox) == 1


def test_the_stored_message_id_matches_the_header_format():
    """The database expression and the header function agree on every id."""
    touch = TouchFactory()

    Touch.objects.filter(pk=touch.pk).update(message_id=touch_message_id_expression())

    touch.refresh_from_db()
    assert touch.message_id == touch_message_id(touch.pk)
    assert touch.message_id.endswith("@example.com>")


def test_channels_come_from_settings_with_defaults_for_the_rest(settings):
    """Overriding one channel keeps the default classes of the others."""
    settings.NURTURE_CHANNELS = {"email": "nurture.channels.NullChannel"}

    assert isinstance(get_channel("email", now=NOW), NullChannel)
    assert isinstance(get_channel("call", now=NOW), TaskChannel)
    assert isinstance(get_channel("retargeting", now=NOW), AudienceChannel)


def test_a_null_email_channel_marks_touches_sent_without_mail(settings):
    """With the null channel configured, dispatch records sends but mails nobody."""
    settings.NURTURE_CHANNELS = {"email": "nurture.channels.NullChannel"}
    cadence = CadenceFactory()
    StepFactory(cadence=cadence, position=1)
    EnrollmentFactory(cadence=cadence, next_due_at=NOW)

    result = dispatch_due_touches(now=NOW)

    assert result.sent == 1
    assert mail.outbox == []
    assert Touch.objects.get().status == Touch.Status.SENT


def test_the_dispatch_task_works_through_every_full_batch(settings):
    """The queue task keeps dispatching until a batch comes back short."""
    settings.NURTURE_DISPATCH_BATCH_SIZE = 2
    cadence = CadenceFactory()
    StepFactory(cadence=cadence, position=1)
    for _ in range(5):
        EnrollmentFactory(cadence=cadence, next_due_at=NOW)

    counts = dispatch_due_touches_task()

    assert counts["claimed"] == 5
    assert counts["sent"] == 5
    assert counts["completed_enrollments"] == 5
    assert len(mail.outbox) == 5


def test_dispatch_stores_the_chosen_variant_and_sends_its_text():
    """The touch records the contact's variant, and the email carries its subject."""
    cadence = CadenceFactory()
    step = StepFactory(cadence=cadence, position=1)
    for label in ("A", "B"):
        StepVariant.objects.create(
            step=step, label=label, subject=f"Subject {label}", body=f"Body {label}"
        )
    enrollment = EnrollmentFactory(cadence=cadence, next_due_at=NOW)

    dispatch_due_touches(now=NOW)

    touch = Touch.objects.get()
    expected = choose_variant(step, enrollment.contact)
    assert touch.variant == expected
    assert mail.outbox[0].subject == f"Subject {expected.label}"


def test_dispatch_records_a_skip_condition_on_the_touch_and_moves_on():
    """A LinkedIn step for a contact without a profile URL is skipped, with why."""
    # Given a LinkedIn step that skips contacts without a URL, then an email
    cadence = CadenceFactory()
    StepFactory(
        cadence=cadence, position=1, channel="linkedin",
        skip_conditions=["no_linkedin_url"],
    )  # fmt: skip
    StepFactory(cadence=cadence, position=2)
    enrollment = EnrollmentFactory(
        cadence=cadence, contact=ContactFactory(linkedin_url=""), next_due_at=NOW
    )

    # When the dispatcher runs
    result = dispatch_due_touches(now=NOW)

    # Then the touch is skipped with the reason and the enrollment moves on
    touch = Touch.objects.get()
    assert (touch.status, touch.detail) == (
        Touch.Status.SKIPPED, "no LinkedIn profile URL"
    )  # fmt: skip
    assert result.skipped == 1
    enrollment.refresh_from_db()
    assert enrollment.next_position == 2


def test_dispatch_skips_an_email_when_the_previous_one_was_not_opened():
    """ "previous_email_not_opened" reads the enrollment's own earlier touch."""
    cadence = CadenceFactory()
    first = StepFactory(cadence=cadence, position=1)
    second = StepFactory(
        cadence=cadence, position=2, skip_conditions=["previous_email_not_opened"]
    )
    enrollment = EnrollmentFactory(cadence=cadence, next_position=2, next_due_at=NOW)
    TouchFactory(enrollment=enrollment, step=first, status=Touch.Status.SENT)

    dispatch_due_touches(now=NOW)

    touch = Touch.objects.get(step=second)
    assert (touch.status, touch.detail) == (
        Touch.Status.SKIPPED, "previous email not opened"
    )  # fmt: skip
    assert mail.outbox == []
