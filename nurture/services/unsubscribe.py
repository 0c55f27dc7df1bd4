"""One-click unsubscribe (RFC 8058): signed links and what a click does.

A token is signed with the secret key and a salt of its own, so nobody can
make one for another contact or alter the ids inside. It stays valid for
NURTURE_UNSUBSCRIBE_MAX_AGE_DAYS.
"""

import base64
import datetime as dt
import hashlib
import hmac
import logging
import time
from dataclasses import dataclass

from django.conf import settings
from django.core import signing
from django.urls import reverse
from django.utils.encoding import force_bytes

from crm.models import Contact, EngagementEvent
from nurture import conf

from .engagement import ingest_events

logger = logging.getLogger(__name__)

SALT = "nurture.unsubscribe.v1"


class InvalidToken(Exception):
    """The link was altered, made up, or has expired."""


@dataclass(frozen=True)
class UnsubscribeLink:
    contact_id: int
    touch_id: int | None


def make_token(contact_id: int, touch_id: int | None = None) -> str:
    """Return the signed token for a contact, and the touch that carried it."""
    payload = [contact_id] if touch_id is None else [contact_id, touch_id]
    return signing.dumps(payload, salt=SALT)


def read_token(token: str) -> UnsubscribeLink:
    """Return what a token names, or raise InvalidToken."""
    max_age = dt.timedelta(days=conf.get("NURTURE_UNSUBSCRIBE_MAX_AGE_DAYS"))
    try:
        payload = signing.loads(token, salt=SALT, max_age=max_age)
    except signing.BadSignature as error:  # also covers an expired signature
        raise InvalidToken(str(error)) from None
    if (
        not isinstance(payload, list)
        or not 1 <= len(payload) <= 2
        or not all(isinstance(part, int) for part in payload)
    ):
        raise InvalidToken("unexpected payload")
    return UnsubscribeLink(payload[0], payload[1] if len(payload) == 2 else None)


def unsubscribe_url(contact_id: int, touch_id: int | None = None) -> str:
    """Return the absolute one-click unsubscribe URL for a contact."""
    path = reverse("nurture:unsubscribe", args=[make_token(contact_id, touch_id)])
    return conf.get("NURTURE_SITE_URL").rstrip("/") + path


class UnsubscribeLinks:
    """Make the unsubscribe URLs of one batch of emails cheaply.

    Each URL is the one unsubscribe_url() returns, token for token: the
    same signing.dumps() format, salt and key, readable by read_token().
    The batch only does once what unsubscribe_url() does per link:
    reversing the URL and deriving the signing key from the secret.
    """

    _placeholder = "0token0"

    def __init__(self):
        path = reverse("nurture:unsubscribe", args=[self._placeholder])
        site = conf.get("NURTURE_SITE_URL").rstrip("/")
        self.prefix, _, self.suffix = (site + path).partition(self._placeholder)
        # What django.core.signing does per signature (salted_hmac with the
        # TimestampSigner's salt), with the derived key kept for the batch.
        key = hashlib.sha256(
            (SALT + "signer").encode() + force_bytes(settings.SECRET_KEY)
        ).digest()
        self._mac = hmac.new(key, digestmod=hashlib.sha256)

    def token(self, contact_id: int, touch_id: int | None = None) -> str:
        """Return make_token(contact_id, touch_id), computed faster."""
        payload = (
            f"[{contact_id}]" if touch_id is None else f"[{contact_id},{touch_id}]"
        )
        value = f"{_b64(payload.encode())}:{signing.b62_encode(int(time.time()))}"
        mac = self._mac.copy()
        mac.update(value.encode())
        return f"{value}:{_b64(mac.digest())}"

    def url(self, contact_id: int, touch_id: int | None = None) -> str:
        """Return unsubscribe_url(contact_id, touch_id)."""
        return f"{self.prefix}{self.token(contact_id, touch_id)}{self.suffix}"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unsubscribe_contact(
    link: UnsubscribeLink, *, now: dt.datetime, source: str = "unsubscribe_link"
) -> bool:
    """Unsubscribe the contact a link names; return False if already done.

    The unsubscribe goes through ingest_events, so the contact's
    enrollments end just as for an unsubscribe reported by an ESP. A
    contact deleted since the email went out is nothing to do.
    """
    contact = (
        Contact.objects.filter(pk=link.contact_id).only("pk", "unsubscribed_at").first()
    )
    if contact is None or contact.unsubscribed_at is not None:
        return False

    properties = {"via": "link"}
    if link.touch_id is not None:
        properties["touch_id"] = link.touch_id
    ingest_events(
        [
            {
                "contact": contact.pk,
                "type": EngagementEvent.Type.UNSUBSCRIBE,
                "occurred_at": now,
                "source": source,
                "properties": properties,
            }
        ],
        now=now,
    )
    logger.info("Contact unsubscribed by link", extra={"contact_id": contact.pk})
    return True
