"""Stamp what happened to an email touch: opened, clicked, replied, bounced.

Tracking events name the touch they are about in their properties:
``message_id`` (our stable Message-ID, with or without angle brackets),
``touch_id``, or ``provider_message_id`` (the id the email provider gave
the message). An event that names no touch, or a touch of another contact,
changes no touch; it is still stored and scored as before.

Each time is stamped once, the first time it is seen; a click also stamps
the open. The touch's outcome is the strongest it has reached: replied,
then clicked, then opened, then bounced.
"""

import datetime as dt
import logging
from collections.abc import Iterable, Mapping

from django.db.models import Case, DateTimeField, F, Q, Value, When

from crm.models import EngagementEvent
from nurture.models import Touch

from .out_of_office import is_out_of_office

logger = logging.getLogger(__name__)

E = EngagementEvent.Type
Outcome = Touch.Outcome

# The touch field each tracking event stamps; a click stamps the open too.
STAMPED_FIELDS = {
    E.EMAIL_OPEN: ("opened_at",),
    E.EMAIL_CLICK: ("clicked_at", "opened_at"),
    E.EMAIL_REPLY: ("replied_at",),
    E.EMAIL_BOUNCE: ("bounced_at",),
}

# Touches updated per statement; keeps each CASE within database limits.
CHUNK_SIZE = 500


def stamp_touch_outcomes(events: Iterable[EngagementEvent]) -> int:
    """Stamp the touches that tracking events name; return the times set.

    Out-of-office auto-replies are not replies and stamp nothing. A fixed
    number of queries per call (one read, at most five updates) for up to
    CHUNK_SIZE touches.
    """
    tracking = [
        event
        for event in events
        if event.type in STAMPED_FIELDS and not is_out_of_office(event)
    ]
    references = [(event, touch_reference(event)) for event in tracking]
    references = [(event, ref) for event, ref in references if any(ref)]
    if not references:
        return 0

    touches = load_touches([ref for _, ref in references])

    # The earliest time per touch and field; only the touch's own contact
    # can say something about it.
    earliest: dict[str, dict[int, dt.datetime]] = {}
    for event, ref in references:
        touch_id = touches.resolve(ref)
        if touch_id is None or touches.contact_of[touch_id] != event.contact_id:
            continue
        for name in STAMPED_FIELDS[event.type]:
            times = earliest.setdefault(name, {})
            known = times.get(touch_id)
            times[touch_id] = min(filter(None, (known, event.occurred_at)))

    stamped = sum(_stamp_first(name, times) for name, times in earliest.items())
    if stamped:
        named = set().union(*(times.keys() for times in earliest.values()))
        _raise_outcomes(named)
        logger.info("Stamped %d tracking times on touches", stamped)
    return stamped


def touch_reference(event: EngagementEvent) -> tuple[str, int | None, str]:
    """Return (Message-ID, touch id, provider message id) an event names."""
    properties = event.properties if isinstance(event.properties, Mapping) else {}
    message_id = normalise_message_id(properties.get("message_id"))
    try:
        touch_id = int(properties.get("touch_id") or 0) or None
    except (TypeError, ValueError):
        touch_id = None
    provider_id = str(properties.get("provider_message_id") or "").strip()
    return message_id, touch_id, provider_id


def normalise_message_id(value) -> str:
    """Return a Message-ID in angle brackets, the form touches store; "" if none."""
    text = str(value or "").strip().strip("<>").strip()
    return f"<{text}>" if text else ""


class TouchIndex:
    """Email touches found by any of the three references, from one query."""

    def __init__(self, rows):
        self.contact_of: dict[int, int] = {}
        self.by_message_id: dict[str, int] = {}
        self.by_provider_id: dict[str, int] = {}
        for pk, contact_id, message_id, provider_id in rows:
            self.contact_of[pk] = contact_id
            if message_id:
                self.by_message_id[message_id] = pk
            if provider_id:
                self.by_provider_id[provider_id] = pk

    def resolve(self, ref: tuple[str, int | None, str]) -> int | None:
        """Return the id of the touch a (Message-ID, id, provider id) names."""
        message_id, touch_id, provider_id = ref
        if message_id in self.by_message_id:
            return self.by_message_id[message_id]
        if touch_id in self.contact_of:
            return touch_id
        return self.by_provider_id.get(provider_id) if provider_id else None


def load_touches(refs: list[tuple[str, int | None, str]]) -> TouchIndex:
    """Return the touches any of the references name, in one query."""
    message_ids = {m for m, _, _ in refs if m}
    touch_ids = {t for _, t, _ in refs if t}
    provider_ids = {p for _, _, p in refs if p}
    match = Q(pk__in=touch_ids) | Q(message_id__in=message_ids)
    if provider_ids:
        match |= Q(provider_message_id__in=provider_ids)
    rows = Touch.objects.filter(match).values_list(
        "pk", "contact_id", "message_id", "provider_message_id"
    )
    return TouchIndex(rows)


def _stamp_first(name: str, times: dict[int, dt.datetime]) -> int:
    """Set ``name`` on touches where it is still empty; return how many."""
    ids = list(times)
    stamped = 0
    for start in range(0, len(ids), CHUNK_SIZE):
        chunk = ids[start : start + CHUNK_SIZE]
        value = Case(
            *(When(pk=pk, then=Value(times[pk])) for pk in chunk),
            output_field=DateTimeField(),
        )
        empty = Touch.objects.filter(pk__in=chunk, **{f"{name}__isnull": True})
        stamped += empty.update(**{name: value})
    return stamped


def _raise_outcomes(ids: set[int]) -> None:
    # Derived from the stamped times in the database, so the outcome only
    # ever moves up: a late open never hides an earlier reply.
    strongest = Case(
        When(
            Q(replied_at__isnull=False) | Q(outcome=Outcome.REPLIED),
            then=Value(Outcome.REPLIED),
        ),
        When(
            Q(clicked_at__isnull=False) | Q(outcome=Outcome.CLICKED),
            then=Value(Outcome.CLICKED),
        ),
        When(
            Q(opened_at__isnull=False) | Q(outcome=Outcome.OPENED),
            then=Value(Outcome.OPENED),
        ),
        When(bounced_at__isnull=False, then=Value(Outcome.BOUNCED)),
        default=F("outcome"),
    )
    Touch.objects.filter(pk__in=list(ids)).update(outcome=strongest)
