"""Direct mail: touches queued by the engine, exported in batches for print.

The direct mail channel marks a touch sent and leaves ``exported_at`` empty;
export_direct_mail() writes every such touch once to a CSV file a print
vendor can take, and stamps ``exported_at`` in the same transaction.
"""

import csv
import datetime as dt
import logging
from collections.abc import Mapping
from typing import TextIO

from django.db import connection, transaction

from crm.models import Contact
from nurture.models import Channel, Touch

logger = logging.getLogger(__name__)

CSV_COLUMNS = [
    "touch_id",
    "name",
    "company",
    "address_line1",
    "address_line2",
    "city",
    "postal_code",
    "region",
    "country",
]

# Keys an import may have used for each part of a postal address.
ADDRESS_KEYS = {
    "address_line1": ("address_line1", "address1", "street", "address"),
    "address_line2": ("address_line2", "address2"),
    "postal_code": ("postal_code", "zipcode", "zip", "postcode"),
    "region": ("region", "state", "province"),
}


def postal_address(contact: Contact) -> dict[str, str] | None:
    """Return the contact's postal address by part, or None if incomplete.

    A street and a city (from the contact or its attributes) are the least
    a print vendor can deliver to.
    """
    attributes = contact.attributes if isinstance(contact.attributes, Mapping) else {}
    address = {part: _first(attributes, keys) for part, keys in ADDRESS_KEYS.items()}
    address["city"] = contact.city.strip() or _first(attributes, ("city",))
    address["country"] = contact.country.strip() or _first(attributes, ("country",))
    if not address["address_line1"] or not address["city"]:
        return None
    return address


def _first(attributes: Mapping, keys: tuple[str, ...]) -> str:
    for key in keys:
        value = attributes.get(key)
        if value not in (None, ""):
            return str(value).strip()
    return ""


def pending_direct_mail():
    """Return direct mail touches sent by the engine and not yet exported."""
    return Touch.objects.filter(
        channel=Channel.DIRECT_MAIL,
        status=Touch.Status.SENT,
        exported_at__isnull=True,
    )


def export_direct_mail(out: TextIO, *, now: dt.datetime, limit: int = 10_000) -> int:
    """Write pending direct mail touches as CSV rows to ``out``; return count.

    The rows are locked (skipping rows another export holds, on PostgreSQL)
    and stamped in one transaction, so two exports never print the same
    touch and a failed write stamps nothing.
    """
    writer = csv.DictWriter(out, fieldnames=CSV_COLUMNS)
    writer.writeheader()
    with transaction.atomic():
        pending = pending_direct_mail().order_by("pk")
        if connection.features.has_select_for_update_skip_locked:
            pending = pending.select_for_update(skip_locked=True, of=("self",))
        touches = list(pending.select_related("contact__account")[:limit])
        for touch in touches:
            writer.writerow(_row(touch))
        Touch.objects.filter(pk__in=[t.pk for t in touches]).update(exported_at=now)

    if touches:
        logger.info("Exported %d direct mail touches", len(touches))
    return len(touches)


def _row(touch: Touch) -> dict[str, str | int]:
    contact = touch.contact
    address = postal_address(contact) or {}
    return {
        "touch_id": touch.pk,
        "name": contact.name,
        "company": contact.account.name if contact.account else "",
        **{column: address.get(column, "") for column in CSV_COLUMNS[3:]},
    }
