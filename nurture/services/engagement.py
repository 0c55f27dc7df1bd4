"""Take in engagement events and apply what they mean at once.

An event lands unscored; the rescoring task folds it into the contact's
score later. What cannot wait is suppression: an unsubscribe, a hard bounce
or a complaint stops every automated touch from the moment it is stored.
"""

import datetime as dt
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from django.db import transaction

from crm.models import Contact, EngagementEvent
from nurture.models import Cadence, Enrollment

from .enrollment import exit_enrollments

logger = logging.getLogger(__name__)

E = EngagementEvent.Type
Reason = Enrollment.ExitReason

HARD_BOUNCE_TYPES = frozenset({"hard", "permanent"})
BULK_BATCH_SIZE = 1000


@dataclass
class IngestResult:
    """What one call to ingest_events stored and what it skipped."""

    created: list[EngagementEvent] = field(default_factory=list)
    duplicates: int = 0


def ingest_events(rows: Iterable[Mapping], *, now: dt.datetime) -> IngestResult:
    """Store validated events once each and apply their suppression and exits.

    Each row holds ``contact`` (a Contact or its id), ``type``,
    ``occurred_at`` and optionally ``source``, ``properties`` and
    ``external_id``. A row whose external id is already stored, or repeats
    an earlier row of the same call, counts as a duplicate.
    """
    events, duplicates = _new_events(rows)
    if not events:
        return IngestResult(duplicates=duplicates)

    with transaction.atomic():
        created = _store(events)
        _apply_effects(created, now=now)

    logger.info("Ingested %d events, %d duplicates", len(created), duplicates)
    return IngestResult(created=created, duplicates=duplicates)


def is_hard_bounce(event: EngagementEvent) -> bool:
    """Say whether an event reports an address that will never accept mail."""
    if event.type != E.EMAIL_BOUNCE:
        return False
    bounce_type = str((event.properties or {}).get("bounce_type", ""))
    return bounce_type.strip().lower() in HARD_BOUNCE_TYPES


def is_complaint(event: EngagementEvent) -> bool:
    """Say whether an event reports that the contact marked mail as spam."""
    return bool((event.properties or {}).get("complaint"))


def _new_events(rows: Iterable[Mapping]) -> tuple[list[EngagementEvent], int]:
    events = [_build(row) for row in rows]
    keys = {event.external_id for event in events if event.external_id}
    stored = set(
        EngagementEvent.objects.filter(external_id__in=keys).values_list(
            "external_id", flat=True
        )
    )

    # Keep the first row for each external id that is not stored yet.
    new, seen, duplicates = [], set(stored), 0
    for event in events:
        if event.external_id and event.external_id in seen:
            duplicates += 1
            continue
        seen.add(event.external_id)
        new.append(event)
    return new, duplicates


def _build(row: Mapping) -> EngagementEvent:
    contact = row["contact"]
    contact_id = contact.pk if isinstance(contact, Contact) else contact
    return EngagementEvent(
        contact_id=contact_id,
        type=row["type"],
        occurred_at=row["occurred_at"],
        source=row.get("source") or "",
        properties=row.get("properties") or {},
        external_id=row.get("external_id") or "",
    )


def _store(events: list[EngagementEvent]) -> list[EngagementEvent]:
    keyless = [event for event in events if not event.external_id]
    keyed = [event for event in events if event.external_id]
    created = EngagementEvent.objects.bulk_create(keyless, batch_size=BULK_BATCH_SIZE)
    if not keyed:
        return created

    # Another request may store the same external id between our check and
    # this insert; ignoring the conflict keeps that event stored only once.
    # Ignored rows come back without ids, so read the keyed rows back.
    EngagementEvent.objects.bulk_create(
        keyed, batch_size=BULK_BATCH_SIZE, ignore_conflicts=True
    )
    keys = [event.external_id for event in keyed]
    created.extend(EngagementEvent.objects.filter(external_id__in=keys))
    return created


def _apply_effects(events: list[EngagementEvent], *, now: dt.datetime) -> None:
    unsubscribed = {e.contact_id for e in events if e.type == E.UNSUBSCRIBE}
    bounced = {e.contact_id for e in events if is_hard_bounce(e)}
    complained = {e.contact_id for e in events if is_complaint(e)}
    replied = {e.contact_id for e in events if e.type == E.EMAIL_REPLY}
    met = {e.contact_id for e in events if e.type == E.MEETING_BOOKED}

    # Suppression first: the flags are what the dispatcher checks.
    contacts = Contact.objects.all()
    if unsubscribed:
        contacts.filter(pk__in=unsubscribed, unsubscribed_at__isnull=True).update(
            unsubscribed_at=now, updated_at=now
        )
    if bounced:
        contacts.filter(pk__in=bounced, hard_bounced_at__isnull=True).update(
            hard_bounced_at=now, updated_at=now
        )
    if complained:
        contacts.filter(pk__in=complained, do_not_email=False).update(
            do_not_email=True, updated_at=now
        )

    # A contact who can no longer be mailed leaves every cadence; a reply or
    # a meeting ends only the cadences that ask for it.
    if unsubscribed | complained:
        exit_enrollments(unsubscribed | complained, Reason.UNSUBSCRIBED, now=now)
    if bounced:
        exit_enrollments(bounced, Reason.BOUNCED, now=now)
    if replied:
        exit_enrollments(
            replied,
            Reason.REPLIED,
            now=now,
            cadence_ids=_cadence_ids(exit_on_reply=True),
        )
    if met:
        exit_enrollments(
            met,
            Reason.MEETING,
            now=now,
            cadence_ids=_cadence_ids(exit_on_meeting=True),
        )


def _cadence_ids(**flags) -> list[int]:
    return list(Cadence.objects.filter(**flags).values_list("pk", flat=True))
