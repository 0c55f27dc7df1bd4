"""Deliver touches, one class per channel, chosen by settings.

Like Django's email backends: ``NURTURE_CHANNELS`` maps a step channel to a
dotted path of a BaseChannel subclass. A channel receives the touches of one
batch, already recorded as "sending", and says for each what happened. It
never changes touches or enrollments itself; the dispatcher does.
"""

import datetime as dt
import email.utils
import logging
from dataclasses import dataclass

from django.conf import settings
from django.core.mail import EmailMultiAlternatives, get_connection
from django.db.models import CharField, Value
from django.db.models.functions import Cast, Concat
from django.utils.crypto import salted_hmac
from django.utils.module_loading import import_string

from nurture import conf
from nurture.models import Channel, ContentItem, StepVariant, Task, Touch
from nurture.services.audiences import add_to_audiences, audience_name
from nurture.services.content import next_content_for, offered_detail
from nurture.services.direct_mail import postal_address
from nurture.services.rendering import (
    StepTemplates,
    render_step_email,
    sender_name,
    uses_content,
)
from nurture.services.unsubscribe import UnsubscribeLinks

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Delivery:
    """What a channel did with one touch."""

    status: str
    detail: str = ""

    @classmethod
    def failed(cls, error: Exception) -> "Delivery":
        return cls(Touch.Status.FAILED, f"{type(error).__name__}: {error}"[:255])


class BaseChannel:
    """Deliver the touches of one channel; subclasses override send()."""

    def __init__(self, *, now: dt.datetime):
        self.now = now

    def send(self, touches: list[Touch]) -> dict[int, Delivery]:
        """Deliver ``touches`` and return a Delivery for each touch id.

        Touches come with enrollment, contact (with owner and account),
        step and enrollment.cadence loaded; the enrollment's dates and the
        contact's scoring fields are not loaded (reading one costs a query).
        A failure for one touch must not stop the others: return a failed
        Delivery for it instead of raising.
        """
        raise NotImplementedError


class NullChannel(BaseChannel):
    """Pretend every touch went out; for benchmarks and dry runs."""

    def send(self, touches: list[Touch]) -> dict[int, Delivery]:
        return {
            touch.pk: Delivery(Touch.Status.SENT, "null channel") for touch in touches
        }


class AudienceChannel(BaseChannel):
    """Add each contact to the retargeting audience its step names.

    The audience is a list of AudienceMember rows that the API and a CSV
    export read. TODO(#3): push members to an ad platform's audience API;
    remove once one is configured.
    """

    def send(self, touches: list[Touch]) -> dict[int, Delivery]:
        try:
            add_to_audiences(touches, now=self.now)
        except Exception as error:
            logger.exception("Could not add %d contacts to audiences", len(touches))
            return {touch.pk: Delivery.failed(error) for touch in touches}
        return {
            touch.pk: Delivery(
                Touch.Status.SENT, f"audience {audience_name(touch.step)}"
            )
            for touch in touches
        }


class DirectMailChannel(BaseChannel):
    """Queue each touch for the next print export (export_direct_mail).

    A contact without a street and city is skipped: a vendor cannot
    deliver to them.
    """

    def send(self, touches: list[Touch]) -> dict[int, Delivery]:
        return {
            touch.pk: (
                Delivery(Touch.Status.SENT, "queued for print export")
                if postal_address(touch.contact)
                else Delivery(Touch.Status.SKIPPED, "no postal address")
            )
            for touch in touches
        }


class TaskChannel(BaseChannel):
    """Create a rep task for each touch: call, LinkedIn message, direct mail.

    Every contact must have an owner by now; the dispatcher routes ownerless
    contacts before calling this.
    """

    titles = {
        Channel.CALL: "Call {}",
        Channel.LINKEDIN: "Message {} on LinkedIn",
        Channel.DIRECT_MAIL: "Send direct mail to {}",
    }

    def send(self, touches: list[Touch]) -> dict[int, Delivery]:
        tasks = [
            Task(
                contact=touch.contact,
                assignee_id=touch.contact.owner_id,
                touch=touch,
                type=touch.channel,
                title=self.titles[touch.channel].format(touch.contact)[:255],
                instructions=touch.step.task_instructions,
                # The dispatcher sets task_due_at inside the rep's hours.
                due_at=getattr(touch, "task_due_at", None) or self.now,
                created_at=self.now,
            )
            for touch in touches
        ]
        try:
            Task.objects.bulk_create(tasks)
        except Exception as error:
            logger.exception("Could not create %d rep tasks", len(tasks))
            return {touch.pk: Delivery.failed(error) for touch in touches}
        return {touch.pk: Delivery(Touch.Status.TASK_CREATED) for touch in touches}


class EmailChannel(BaseChannel):
    """Render each touch's step and send it through Django's email backend.

    One backend connection serves the whole batch. Messages go out one at a
    time so a refused message marks only its own touch failed. The touch's
    A/B variant and the contacts' next content items are loaded once per
    batch; a touch that offered an item records it in its detail. What is
    the same for every message (compiled templates, the unsubscribe URL's
    prefix and signing key, sender addresses) is worked out once per batch.
    """

    def send(self, touches: list[Touch]) -> dict[int, Delivery]:
        results: dict[int, Delivery] = {}
        templates = StepTemplates()
        self.links = UnsubscribeLinks()
        self.senders: dict[int | None, str] = {}
        self.mailto = conf.get("NURTURE_UNSUBSCRIBE_MAILTO")
        self.message_id = _message_id_parts()
        # The mailto target of List-Unsubscribe is the same for every email.
        self.unsubscribe_tail = _mailto_target(self.mailto)
        # Deliveries are immutable: share the one most touches end with.
        sent = Delivery(Touch.Status.SENT)
        variants = self.load_variants(touches)
        contents = self.load_contents(touches, variants)
        connection = get_connection()
        try:
            connection.open()
            for touch in touches:
                content = contents.get(touch.contact_id) if contents else None
                try:
                    message = self.build_message(
                        touch,
                        templates,
                        connection,
                        variant=variants.get(touch.variant_id),
                        content=content,
                    )
                    connection.send_messages([message])
                except Exception as error:
                    logger.warning(
                        "Email touch failed: %s",
                        type(error).__name__,
                        extra={"touch_id": touch.pk},
                    )
                    results[touch.pk] = Delivery.failed(error)
                else:
                    results[touch.pk] = (
                        Delivery(Touch.Status.SENT, offered_detail(content))
                        if content
                        else sent
                    )
        finally:
            connection.close()
        return results

    def load_variants(self, touches: list[Touch]) -> dict[int, StepVariant]:
        """Return the variants the touches were planned with, by id."""
        ids = {touch.variant_id for touch in touches if touch.variant_id}
        if not ids:
            return {}
        return {v.pk: v for v in StepVariant.objects.filter(pk__in=ids)}

    def load_contents(self, touches, variants) -> dict[int, ContentItem | None]:
        """Return the next content item per contact, for templates that use it."""
        contacts = [
            touch.contact
            for touch in touches
            if uses_content(touch.step, variants.get(touch.variant_id))
        ]
        return next_content_for(contacts) if contacts else {}

    def build_message(
        self,
        touch: Touch,
        templates: StepTemplates,
        connection,
        *,
        variant: StepVariant | None = None,
        content: ContentItem | None = None,
    ):
        """Return the EmailMultiAlternatives that carries one touch."""
        contact = touch.contact
        sender = contact.owner or touch.enrollment.cadence.sender
        unsubscribe = self.links.url(contact.pk, touch.pk)
        rendered = render_step_email(
            touch.step,
            contact,
            sender=sender,
            templates=templates,
            variant=variant,
            content=content,
            unsubscribe_url=unsubscribe,
        )
        message = EmailMultiAlternatives(
            subject=rendered.subject,
            body=rendered.text,
            from_email=self.from_address(sender),
            to=[contact.email],
            reply_to=[sender.email] if sender and sender.email else None,
            # unsubscribe_headers(unsubscribe), with its constant part made
            # once per batch.
            headers={
                "Message-ID": f"{self.message_id[0]}{touch.pk}{self.message_id[1]}",
                "List-Unsubscribe": f"<{unsubscribe}>{self.unsubscribe_tail}",
                "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
            },
            # Not the batch's connection: send() passes it, and the locmem
            # backend would deep-copy it into every stored message.
        )
        message.attach_alternative(rendered.html, "text/html")
        return message

    def from_address(self, sender) -> str:
        """Return the From header for a sending user, once per sender."""
        key = sender.pk if sender is not None else None
        if key not in self.senders:
            self.senders[key] = email.utils.formataddr(
                (sender_name(sender), settings.DEFAULT_FROM_EMAIL)
            )
        return self.senders[key]


def unsubscribe_headers(url: str, *, mailto: str | None = None) -> dict[str, str]:
    """Return the RFC 8058 one-click unsubscribe headers for a link."""
    mailbox = conf.get("NURTURE_UNSUBSCRIBE_MAILTO") if mailto is None else mailto
    return {
        "List-Unsubscribe": f"<{url}>{_mailto_target(mailbox)}",
        "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
    }


def _mailto_target(mailbox: str) -> str:
    # What follows the link in List-Unsubscribe: a mailbox, when there is one.
    return f", <mailto:{mailbox}?subject=unsubscribe>" if mailbox else ""


def get_channel(name: str, *, now: dt.datetime) -> BaseChannel:
    """Return the configured channel instance for a step channel."""
    paths = {**conf.DEFAULTS["NURTURE_CHANNELS"], **conf.get("NURTURE_CHANNELS")}
    return import_string(paths[name])(now=now)


def _message_id_parts() -> tuple[str, str]:
    # The token ties ids to this installation's secret, so two installs (or
    # a restored test database) never mint the same Message-ID.
    token = salted_hmac("nurture.touch-message-id", "v1").hexdigest()[:12]
    domain = settings.DEFAULT_FROM_EMAIL.rpartition("@")[2] or "localhost"
    return "<touch-", f".{token}@{domain}>"


def touch_message_id(touch_id: int) -> str:
    """Return the stable Message-ID header of an email touch."""
    prefix, suffix = _message_id_parts()
    return f"{prefix}{touch_id}{suffix}"


def touch_message_id_expression():
    """Return touch_message_id(pk) as a database expression, for updates."""
    prefix, suffix = _message_id_parts()
    return Concat(
        Value(prefix), Cast("pk", CharField()), Value(suffix), output_field=CharField()
    )
