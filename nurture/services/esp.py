"""Email provider webhooks: read Mailgun, Postmark and SendGrid tracking events.

Each provider posts its own shape. A parser turns one payload into
ProviderEvents (or a NurtureError per bad item); record_provider_events()
finds each event's contact and feeds ingest_events(), so opens and clicks
stamp their touch, hard bounces and complaints suppress the contact, and a
provider's retry is a duplicate, never a second event.

Contacts are found by the touch's Message-ID (or touch id, or the
provider's message id) first, then by recipient address, case-folded.
"""

import datetime as dt
import hashlib
import hmac
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from django.db.models import Case, CharField, Value, When
from django.utils.dateparse import parse_datetime

from crm.models import Contact, EngagementEvent, normalise_email
from nurture import conf
from nurture.models import Touch

from .engagement import ingest_events
from .errors import NurtureError
from .outcomes import load_touches, normalise_message_id

logger = logging.getLogger(__name__)

E = EngagementEvent.Type

# Not an engagement event: the provider confirms it handed the mail over.
DELIVERED = "delivered"

# Postmark bounce types that mean the address will never accept mail.
POSTMARK_HARD_BOUNCES = frozenset({"HardBounce", "BadEmailAddress"})
# Words in a SendGrid "dropped" reason that mean the address is dead.
SENDGRID_HARD_WORDS = ("bounce", "invalid")


@dataclass
class ProviderEvent:
    """One tracking event as a provider reported it, before contact lookup."""

    kind: str  # an EngagementEvent.Type, or DELIVERED
    occurred_at: dt.datetime
    external_id: str
    recipient: str = ""
    message_id: str = ""
    touch_id: int | None = None
    provider_message_id: str = ""
    properties: dict = field(default_factory=dict)


@dataclass
class WebhookResult:
    """What one webhook post stored, confirmed, ignored and refused."""

    created: int = 0
    duplicates: int = 0
    delivered: int = 0
    ignored: int = 0
    errors: list[dict] = field(default_factory=list)


def record_provider_events(
    provider: str, payload, *, now: dt.datetime
) -> WebhookResult:
    """Store what a provider's webhook payload reports; return the tally.

    Raise NurtureError when the payload as a whole cannot be read. A bad
    item of a batch is listed in ``errors`` and the good ones are kept.
    """
    parser = PARSERS.get(provider)
    if parser is None:
        raise NurtureError(f"Unknown email provider {provider!r}.", field="provider")
    parsed = parser(payload)

    result = WebhookResult()
    events: list[tuple[int, ProviderEvent]] = []
    for index, item in enumerate(parsed):
        if isinstance(item, NurtureError):
            result.errors.append(_error(index, item))
        elif item is None:
            result.ignored += 1
        else:
            events.append((index, item))

    contacts = _resolve_contacts([event for _, event in events])
    rows, row_indexes, delivered = [], [], []
    for index, event in events:
        contact_id = contacts.get(id(event))
        if contact_id is None:
            # A provider also reports mail we did not send; it is no error.
            result.ignored += 1
        elif event.kind == DELIVERED:
            # Only a delivery of one of our touches says anything new.
            if event.touch_id and event.provider_message_id:
                delivered.append(event)
            else:
                result.ignored += 1
        else:
            rows.append(_row(provider, event, contact_id))
            row_indexes.append(index)

    result.delivered = _confirm_deliveries(delivered)
    if rows:
        ingested = ingest_events(rows, now=now)
        result.created = len(ingested.created)
        result.duplicates = ingested.duplicates
        result.errors.extend(
            {"index": row_indexes[position], "field": "id", "error": reason}
            for position, reason in ingested.rejected
        )
    logger.info(
        "Provider %s webhook: %d stored, %d duplicates, %d errors",
        provider,
        result.created,
        result.duplicates,
        len(result.errors),
    )
    return result


# Authentication -----------------------------------------------------------


class WebhookAuthError(Exception):
    """A webhook post that cannot be trusted; ``status`` is 401 or 403."""

    def __init__(self, message: str, *, status: int):
        super().__init__(message)
        self.status = status


def verify_mailgun(payload) -> None:
    """Check Mailgun's HMAC-SHA256 signature of timestamp + token."""
    key = conf.get("NURTURE_MAILGUN_SIGNING_KEY")
    if not key:
        raise _not_configured("NURTURE_MAILGUN_SIGNING_KEY")
    block = payload.get("signature") if isinstance(payload, Mapping) else None
    if not isinstance(block, Mapping) or not all(
        block.get(name) for name in ("timestamp", "token", "signature")
    ):
        raise WebhookAuthError("The payload carries no signature.", status=401)
    expected = hmac.new(
        key.encode(),
        f"{block['timestamp']}{block['token']}".encode(),
        hashlib.sha256,
    ).hexdigest()
    if not hmac.compare_digest(expected, str(block["signature"])):
        raise WebhookAuthError("The signature does not match.", status=403)


def verify_token(provider: str, offered: str | None) -> None:
    """Check the shared secret a Postmark or SendGrid webhook URL carries."""
    setting = f"NURTURE_{provider.upper()}_WEBHOOK_TOKEN"
    secret = conf.get(setting)
    if not secret:
        raise _not_configured(setting)
    if not offered:
        raise WebhookAuthError("No webhook token was given.", status=401)
    if not hmac.compare_digest(secret.encode(), offered.encode()):
        raise WebhookAuthError("The webhook token is wrong.", status=403)


def _not_configured(setting: str) -> WebhookAuthError:
    # Never accept tracking nobody can vouch for, even in development.
    return WebhookAuthError(
        f"Webhook refused: set {setting} to accept this provider's events.",
        status=403,
    )


# Parsers: provider payload -> ProviderEvent | None (ignored) | NurtureError


def parse_mailgun(payload) -> list:
    """Read one Mailgun webhook: a signature block and ``event-data``."""
    data = payload.get("event-data") if isinstance(payload, Mapping) else None
    if not isinstance(data, Mapping):
        raise NurtureError("Expected an object with event-data.", field="event-data")
    try:
        return [_mailgun_event(data)]
    except NurtureError as error:
        return [error]


def _mailgun_event(data: Mapping) -> ProviderEvent | None:
    name = data.get("event")
    status = data.get("delivery-status") or {}
    properties: dict = {}
    if name == "delivered":
        kind = DELIVERED
    elif name == "opened":
        kind = E.EMAIL_OPEN
    elif name == "clicked":
        kind = E.EMAIL_CLICK
        properties["url"] = data.get("url", "")
    elif name == "failed":
        kind = E.EMAIL_BOUNCE
        permanent = data.get("severity") == "permanent"
        properties.update(
            bounce_type="hard" if permanent else "soft",
            reason=data.get("reason", ""),
            code=status.get("code"),
        )
    elif name == "complained":
        kind = E.OTHER
        properties["complaint"] = True
    elif name == "unsubscribed":
        kind = E.UNSUBSCRIBE
    else:
        return None

    header = ((data.get("message") or {}).get("headers") or {}).get("message-id")
    variables = data.get("user-variables") or {}
    return ProviderEvent(
        kind=kind,
        occurred_at=_epoch(data.get("timestamp"), "event-data.timestamp"),
        external_id=_required(data.get("id"), "event-data.id"),
        recipient=str(data.get("recipient") or ""),
        message_id=normalise_message_id(header),
        touch_id=_int(variables.get("touch_id")),
        provider_message_id=str(header or "").strip("<> "),
        properties={"event": name, **properties},
    )


def parse_postmark(payload) -> list:
    """Read one Postmark webhook, named by its RecordType."""
    if not isinstance(payload, Mapping) or not payload.get("RecordType"):
        raise NurtureError("Expected an object with a RecordType.", field="RecordType")
    try:
        return [_postmark_event(payload)]
    except NurtureError as error:
        return [error]


def _postmark_event(data: Mapping) -> ProviderEvent | None:
    record = data["RecordType"]
    properties: dict = {}
    if record == "Delivery":
        kind, moment = DELIVERED, "DeliveredAt"
    elif record == "Open":
        kind, moment = E.EMAIL_OPEN, "ReceivedAt"
    elif record == "Click":
        kind, moment = E.EMAIL_CLICK, "ReceivedAt"
        properties["url"] = data.get("OriginalLink", "")
    elif record == "Bounce" and data.get("Type") == "SpamComplaint":
        kind, moment = E.OTHER, "BouncedAt"
        properties["complaint"] = True
    elif record == "Bounce":
        kind, moment = E.EMAIL_BOUNCE, "BouncedAt"
        hard = data.get("Type") in POSTMARK_HARD_BOUNCES
        properties.update(
            bounce_type="hard" if hard else "soft", reason=data.get("Type", "")
        )
    elif record == "SpamComplaint":
        kind, moment = E.OTHER, "BouncedAt"
        properties["complaint"] = True
    elif record == "SubscriptionChange" and data.get("SuppressSending") is True:
        kind, moment = E.UNSUBSCRIBE, "ChangedAt"
        properties["reason"] = data.get("SuppressionReason", "")
    else:
        # A resubscription or an unknown record: nothing to act on.
        return None

    provider_id = str(data.get("MessageID") or "")
    occurred_at = _iso(data.get(moment), moment)
    # Bounces carry their own id; other records are one per message and
    # moment, which a retry repeats exactly.
    if data.get("ID") is not None:
        external_id = f"{record}:{data['ID']}"
    else:
        key = _required(provider_id, "MessageID")
        external_id = f"{key}:{record}:{data.get(moment)}"
    metadata = data.get("Metadata") if isinstance(data.get("Metadata"), Mapping) else {}
    return ProviderEvent(
        kind=kind,
        occurred_at=occurred_at,
        external_id=external_id,
        recipient=str(data.get("Recipient") or data.get("Email") or ""),
        message_id=normalise_message_id(metadata.get("message_id")),
        touch_id=_int(metadata.get("touch_id")),
        provider_message_id=provider_id,
        properties={"event": record, **properties},
    )


def parse_sendgrid(payload) -> list:
    """Read a SendGrid event batch, a JSON array; bad items stand alone."""
    if not isinstance(payload, list):
        raise NurtureError("Expected a list of events.", field="events")
    parsed = []
    for item in payload:
        try:
            if not isinstance(item, Mapping):
                raise NurtureError("Expected an object.", field="event")
            parsed.append(_sendgrid_event(item))
        except NurtureError as error:
            parsed.append(error)
    return parsed


def _sendgrid_event(data: Mapping) -> ProviderEvent | None:
    name = data.get("event")
    properties: dict = {}
    if name == "delivered":
        kind = DELIVERED
    elif name == "open":
        kind = E.EMAIL_OPEN
    elif name == "click":
        kind = E.EMAIL_CLICK
        properties["url"] = data.get("url", "")
    elif name == "bounce":
        # SendGrid calls a refusal "bounce" and a temporary block "blocked".
        kind = E.EMAIL_BOUNCE
        hard = data.get("type", "bounce") == "bounce"
        properties.update(
            bounce_type="hard" if hard else "soft", reason=data.get("reason", "")
        )
    elif name == "dropped":
        kind = E.EMAIL_BOUNCE
        reason = str(data.get("reason") or "")
        hard = any(word in reason.lower() for word in SENDGRID_HARD_WORDS)
        properties.update(bounce_type="hard" if hard else "soft", reason=reason)
    elif name == "spamreport":
        kind = E.OTHER
        properties["complaint"] = True
    elif name in ("unsubscribe", "group_unsubscribe"):
        kind = E.UNSUBSCRIBE
    else:
        return None

    # sg_message_id is the X-Message-Id SendGrid answered at send time,
    # followed by a suffix naming the filter server.
    provider_id = str(data.get("sg_message_id") or "").partition(".")[0]
    return ProviderEvent(
        kind=kind,
        occurred_at=_epoch(data.get("timestamp"), "timestamp"),
        external_id=_required(data.get("sg_event_id"), "sg_event_id"),
        recipient=str(data.get("email") or ""),
        message_id=normalise_message_id(data.get("message_id") or data.get("smtp-id")),
        touch_id=_int(data.get("touch_id")),
        provider_message_id=provider_id,
        properties={"event": name, **properties},
    )


PARSERS: dict[str, Callable[[object], list]] = {
    "mailgun": parse_mailgun,
    "postmark": parse_postmark,
    "sendgrid": parse_sendgrid,
}


# Contacts and touches -----------------------------------------------------


def _resolve_contacts(events: list[ProviderEvent]) -> dict[int, int]:
    """Return the contact id of each event (keyed by id(event)), two queries.

    An event matched to a touch also gets the touch's id.
    """
    touches = load_touches(
        [(e.message_id, e.touch_id, e.provider_message_id) for e in events]
    )
    found: dict[int, int] = {}
    unmatched: list[ProviderEvent] = []
    for event in events:
        ref = (event.message_id, event.touch_id, event.provider_message_id)
        touch_id = touches.resolve(ref)
        if touch_id is None:
            event.touch_id = None
            unmatched.append(event)
        else:
            event.touch_id = touch_id
            found[id(event)] = touches.contact_of[touch_id]

    emails = {normalise_email(e.recipient) for e in unmatched if e.recipient}
    if emails:
        by_email = dict(
            Contact.objects.filter(email__in=emails).values_list("email", "pk")
        )
        for event in unmatched:
            contact_id = by_email.get(normalise_email(event.recipient))
            if contact_id is not None:
                found[id(event)] = contact_id
    return found


def _confirm_deliveries(events: list[ProviderEvent]) -> int:
    """Record the provider's message id on delivered touches; return how many."""
    ids = {e.touch_id: e.provider_message_id[:255] for e in events}
    if not ids:
        return 0
    value = Case(
        *(When(pk=pk, then=Value(provider_id)) for pk, provider_id in ids.items()),
        output_field=CharField(),
    )
    return Touch.objects.filter(pk__in=list(ids), provider_message_id="").update(
        provider_message_id=value
    )


def _row(provider: str, event: ProviderEvent, contact_id: int) -> dict:
    properties = dict(event.properties)
    if event.message_id:
        properties["message_id"] = event.message_id
    if event.touch_id:
        properties["touch_id"] = event.touch_id
    if event.provider_message_id:
        properties["provider_message_id"] = event.provider_message_id
    return {
        "contact": contact_id,
        "type": event.kind,
        "occurred_at": event.occurred_at,
        "source": provider,
        "external_id": event.external_id[:200],
        "properties": properties,
    }


# Field readers --------------------------------------------------------------


def _error(index: int, error: NurtureError) -> dict:
    return {"index": index, "field": error.field, "error": str(error.message)}


def _required(value, name: str) -> str:
    text = str(value or "").strip()
    if not text:
        raise NurtureError("This field is required.", field=name)
    return text


def _epoch(value, name: str) -> dt.datetime:
    try:
        return dt.datetime.fromtimestamp(float(value), tz=dt.UTC)
    except (TypeError, ValueError, OverflowError, OSError):
        raise NurtureError("Expected a Unix timestamp.", field=name) from None


def _iso(value, name: str) -> dt.datetime:
    try:
        moment = parse_datetime(str(value or ""))
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None:
        raise NurtureError("Expected an ISO 8601 time with a zone.", field=name)
    return moment


def _int(value) -> int | None:
    try:
        return int(value) or None
    except (TypeError, ValueError):
        return None
