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
from nurture.models import Channel, Task, Touch
from nurture.services.rendering import StepTemplates, render_step_email, sender_name

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
        step and enrollment.cadence loaded. A failure for one touch must not
        stop the others: return a failed Delivery for it instead of raising.
        """
        raise NotImplementedError


class NullChannel(BaseChannel):
    """Pretend every touch went out; for benchmarks and dry runs."""

    def send(self, touches: list[Touch]) -> dict[int, Delivery]:
        return {
            touch.pk: Delivery(Touch.Status.SENT, "null channel") for touch in touches
        }


class AudienceChannel(BaseChannel):
    """Add contacts to a retargeting audience.

    TODO(#4): push the contacts to an ad platform's audience API; remove
    this placeholder when one is configured.
    """

    def send(self, touches: list[Touch]) -> dict[int, Delivery]:
        return {
            touch.pk: Delivery(Touch.Status.SENT, "added to audience")
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
    time so a refused message marks only its own touch failed.
    """

    def send(self, touches: list[Touch]) -> dict[int, Delivery]:
        results: dict[int, Delivery] = {}
        templates = StepTemplates()
        connection = get_connection()
        try:
            connection.open()
            for touch in touches:
                try:
                    message = self.build_message(touch, templates, connection)
                    connection.send_messages([message])
                except Exception as error:
                    logger.warning(
                        "Email touch failed: %s",
                        type(error).__name__,
                        extra={"touch_id": touch.pk},
                    )
                    results[touch.pk] = Delivery.failed(error)
                else:
                    results[touch.pk] = Delivery(Touch.Status.SENT)
        finally:
            connection.close()
        return results

    def build_message(self, touch: Touch, templates: StepTemplates, connection):
        """Return the EmailMultiAlternatives that carries one touch."""
        contact = touch.contact
        sender = contact.owner or touch.enrollment.cadence.sender
        rendered = render_step_email(
            touch.step, contact, sender=sender, templates=templates
        )
        message = EmailMultiAlternatives(
            subject=rendered.subject,
            body=rendered.text,
            from_email=email.utils.formataddr(
                (sender_name(sender), settings.DEFAULT_FROM_EMAIL)
            ),
            to=[contact.email],
            reply_to=[sender.email] if sender and sender.email else None,
            headers={"Message-ID": touch_message_id(touch.pk)},
            connection=connection,
        )
        message.attach_alternative(rendered.html, "text/html")
        return message


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
