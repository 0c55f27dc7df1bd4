"""Turn a step's subject and body templates into the email a contact reads."""

import logging
from dataclasses import dataclass

from django.template import Context, Engine, Template
from django.template.loader import render_to_string
from django.utils.safestring import mark_safe

from crm.models import Contact
from nurture import conf
from nurture.models import Step

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RenderedEmail:
    subject: str
    text: str
    html: str


class StepTemplates:
    """Compile each step's templates once per batch, not once per contact."""

    def __init__(self):
        self._compiled: dict[tuple[int, str], Template] = {}

    def get(self, step: Step, part: str) -> Template:
        key = (step.pk, part)
        if key not in self._compiled:
            source = step.subject if part == "subject" else step.body
            self._compiled[key] = Engine.get_default().from_string(source)
        return self._compiled[key]


def greeting_name(contact: Contact) -> str:
    """Return the name to greet a contact by, never an empty string."""
    return (contact.first_name or "").strip() or "there"


def sender_name(sender) -> str:
    """Return how a sending user signs, or the team name when there is none."""
    if sender is None:
        return conf.get("NURTURE_SENDER_NAME")
    return sender.get_full_name() or sender.get_username()


def render_step_email(
    step: Step,
    contact: Contact,
    *,
    sender=None,
    templates: StepTemplates | None = None,
) -> RenderedEmail:
    """Render a step for one contact, wrapped in the base email layout.

    The step's templates see ``contact``, ``account``, ``sender`` (a name),
    ``step`` and ``greeting_name``, which falls back to "there" so a lead
    without a first name is never greeted with "Hi ,".
    """
    templates = templates or StepTemplates()
    signature = sender_name(sender)
    context = {
        "contact": contact,
        "account": contact.account,
        "sender": signature,
        "sender_user": sender,
        "step": step,
        "greeting_name": greeting_name(contact),
    }

    # The plain text and the subject must not be HTML-escaped; the HTML
    # part must be, because contact fields come from outside.
    subject = templates.get(step, "subject").render(Context(context, autoescape=False))
    text_body = templates.get(step, "body").render(Context(context, autoescape=False))
    html_body = templates.get(step, "body").render(Context(context))

    layout = {
        "sender": signature,
        "sender_address": conf.get("NURTURE_SENDER_ADDRESS"),
    }
    return RenderedEmail(
        # A header holds one line; templates often end with a newline.
        subject=" ".join(subject.split()),
        text=render_to_string(
            "nurture/email/base.txt", {**layout, "body": text_body.strip()}
        ),
        html=render_to_string(
            "nurture/email/base.html",
            {**layout, "body": mark_safe(html_body.strip())},
        ),
    )
