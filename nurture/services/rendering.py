"""Turn a step's subject and body templates into the email a contact reads."""

import logging
from dataclasses import dataclass

from django.template import Context, Engine, Template
from django.utils.safestring import mark_safe

from crm.models import Contact
from nurture import conf
from nurture.models import ContentItem, Step, StepVariant

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RenderedEmail:
    subject: str
    text: str
    html: str


class StepTemplates:
    """Compile each step's templates once per batch, not once per contact.

    The email layouts are looked up once too, and the postal address read
    once, so that rendering one more contact only renders.
    """

    def __init__(self):
        self._compiled: dict[tuple[str, int, str], Template] = {}
        self._layouts: dict[str, Template] = {}
        self._signatures: dict[int | None, str] = {}
        self.sender_address = conf.get("NURTURE_SENDER_ADDRESS")

    def signature(self, sender) -> str:
        """Return sender_name(sender), worked out once per sender."""
        key = sender.pk if sender is not None else None
        if key not in self._signatures:
            self._signatures[key] = sender_name(sender)
        return self._signatures[key]

    def layout(self, name: str) -> Template:
        """Return the email layout template ``name`` (base.txt, base.html)."""
        if name not in self._layouts:
            self._layouts[name] = Engine.get_default().get_template(
                f"nurture/email/{name}"
            )
        return self._layouts[name]

    def get(self, step: Step, part: str, variant: StepVariant | None = None):
        """Return the compiled subject or body of a step, or of its variant."""
        source = variant or step
        key = ("variant" if variant else "step", source.pk, part)
        if key not in self._compiled:
            text = source.subject if part == "subject" else source.body
            self._compiled[key] = Engine.get_default().from_string(text)
        return self._compiled[key]


def uses_content(step: Step, variant: StepVariant | None = None) -> bool:
    """Say whether a step's templates mention ``content`` at all."""
    source = variant or step
    return "content" in source.subject or "content" in source.body


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
    variant: StepVariant | None = None,
    content: ContentItem | None = None,
    unsubscribe_url: str = "",
) -> RenderedEmail:
    """Render a step (or its A/B variant) for one contact, in the base layout.

    The templates see ``contact``, ``account``, ``sender`` (a name),
    ``step``, ``content`` (the next best content item, or None) and
    ``greeting_name``, which falls back to "there" so a lead without a
    first name is never greeted with "Hi ,". The layout adds the postal
    address and the unsubscribe link (a contact-only one when not given).
    """
    templates = templates or StepTemplates()
    if not unsubscribe_url and contact.pk is not None:
        # Imported here: unsubscribe needs URL reversing, rendering does not.
        from .unsubscribe import unsubscribe_url as contact_unsubscribe_url

        unsubscribe_url = contact_unsubscribe_url(contact.pk)
    signature = templates.signature(sender)
    context = Context(
        {
            "contact": contact,
            "account": contact.account,
            "sender": signature,
            "sender_user": sender,
            "step": step,
            "variant": variant,
            "content": content,
            "greeting_name": greeting_name(contact),
        },
        autoescape=False,
    )

    # The plain text and the subject must not be HTML-escaped; the HTML
    # part must be, because contact fields come from outside. One context
    # serves every part; each render gets a layer of its own, so nothing a
    # template sets leaks into the next.
    subject = _render(templates.get(step, "subject", variant), context)
    text_body = _render(templates.get(step, "body", variant), context)
    context.autoescape = True
    html_body = _render(templates.get(step, "body", variant), context)

    # The layouts see only what render_to_string would give them.
    layout = {
        "sender": signature,
        "sender_address": templates.sender_address,
        "unsubscribe_url": unsubscribe_url,
    }
    return RenderedEmail(
        # A header holds one line; templates often end with a newline.
        subject=" ".join(subject.split()),
        text=templates.layout("base.txt").render(
            Context({**layout, "body": text_body.strip()})
        ),
        html=templates.layout("base.html").render(
            Context({**layout, "body": mark_safe(html_body.strip())})
        ),
    )


def _render(template: Template, context: Context) -> str:
    context.push()
    try:
        return template.render(context)
    finally:
        context.pop()
