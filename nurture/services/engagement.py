"""Take in engagement events and apply what they mean at once.

An event lands unscored; the rescoring task folds it into the contact's
score later. What cannot wait is suppression: an unsubscribe, a hard bounce
or a complaint stops every automated touch from the moment it is stored.
"""

import datetime as dt
import logging
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from django.db import connection, transaction

from crm.models import Contact, EngagementEvent
from nurture.models import Cadence, Enrollment

from .batching import max_query_params, value_adapters
from .enrollment import exit_enrollments
from .ids import keys_in
from .out_of_office import is_out_of_office, pause_for_out_of_office
from .outcomes import stamp_touch_outcomes

logger = logging.getLogger(__name__)

E = EngagementEvent.Type
Reason = Enrollment.ExitReason

HARD_BOUNCE_TYPES = frozenset({"hard", "permanent"})
# What a new event row carries; the database fills in the rest.
INSERT_COLUMNS = (
    "contact_id",
    "type",
    "source",
    "occurred_at",
    "received_at",
    "properties",
    "external_id",
)


@dataclass
class IngestResult:
    """What one call to ingest_events stored and what it skipped.

    ``ids`` follows the input order: the stored event's id for each row
    (also for a duplicate, the event it repeats), or None for a rejected
    row. ``rejected`` lists (row index, reason) for rows whose external id
    names an event of another contact or type from the same source.
    """

    created: list[EngagementEvent] = field(default_factory=list)
    duplicates: int = 0
    ids: list[int | None] = field(default_factory=list)
    rejected: list[tuple[int, str]] = field(default_factory=list)


def ingest_events(rows: Iterable[Mapping], *, now: dt.datetime) -> IngestResult:
    """Store validated events once each and apply their suppression and exits.

    Each row holds ``contact`` (a Contact or its id), ``type``,
    ``occurred_at`` and optionally ``source``, ``properties`` and
    ``external_id``. External ids are unique per source. A row whose
    (source, external id) is already stored for the same contact and type,
    or repeats an earlier row of the same call, counts as a duplicate; one
    that names another contact's or another type's event is rejected.
    """
    events = [_build(row) for row in rows]
    result = IngestResult(ids=[None] * len(events))
    # Keys are checked against the database by inserting: a key stored
    # before (a sender's retry) or by a request racing this one is skipped
    # there, then read back. Asking first cost a query per call that
    # PostgreSQL answered by scanning every stored event.
    new = _sort_out(events, result, stored={})
    if new:
        with transaction.atomic():
            _insert(new, now=now)
            result.created = [event for event in new if event.pk]
            skipped = {_key(event) for event in new if event.pk is None}
            if skipped:
                # Sort the call out again, knowing what those keys hold.
                result.duplicates, result.rejected = 0, []
                result.ids = [None] * len(events)
                _sort_out(events, result, stored=_stored(skipped))
            _apply_effects(result.created, now=now)
            stamp_touch_outcomes(result.created)

    # Report ids in input order; in-call repeats point at the stored event.
    ids_by_key = {_key(e): e.pk for e in new if e.external_id and e.pk}
    rejected = {index for index, _ in result.rejected}
    for index, event in enumerate(events):
        if index in rejected or result.ids[index] is not None:
            continue
        result.ids[index] = event.pk if event.pk else ids_by_key.get(_key(event))
    logger.info(
        "Ingested %d events, %d duplicates, %d rejected",
        len(result.created),
        result.duplicates,
        len(result.rejected),
    )
    return result


def is_hard_bounce(event: EngagementEvent) -> bool:
    """Say whether an event reports an address that will never accept mail."""
    if event.type != E.EMAIL_BOUNCE:
        return False
    bounce_type = str((event.properties or {}).get("bounce_type", ""))
    return bounce_type.strip().lower() in HARD_BOUNCE_TYPES


def is_complaint(event: EngagementEvent) -> bool:
    """Say whether an event reports that the contact marked mail as spam."""
    return bool((event.properties or {}).get("complaint"))


def _key(event: EngagementEvent) -> tuple[str, str]:
    return (event.source, event.external_id)


def _sort_out(events: list[EngagementEvent], result: IngestResult, stored: dict):
    """Return the events to store; record duplicates and rejections.

    ``stored`` maps keys already stored to (id, contact id, type).
    """
    # Keep the first row for each key that is not stored yet.
    new, first = [], {}
    for index, event in enumerate(events):
        if not event.external_id:
            new.append(event)
            continue
        key = _key(event)
        if key in stored:
            pk, contact_id, type_ = stored[key]
            if (contact_id, type_) != (event.contact_id, event.type):
                result.rejected.append((index, _conflict(key)))
                continue
            result.duplicates += 1
            result.ids[index] = pk
        elif key in first:
            earlier = events[first[key]]
            if (earlier.contact_id, earlier.type) != (event.contact_id, event.type):
                result.rejected.append((index, _conflict(key)))
                continue
            result.duplicates += 1
        else:
            first[key] = index
            new.append(event)
    return new


def _stored(keys: set[tuple[str, str]]) -> dict:
    """Read the stored events under these keys: key -> (id, contact id, type)."""
    matches = (
        _keyed_events(keys)
        .order_by()
        .values_list("source", "external_id", "pk", "contact_id", "type")
    )
    return {
        (source, external_id): (pk, contact_id, type_)
        for source, external_id, pk, contact_id, type_ in matches
        if (source, external_id) in keys
    }


def _conflict(key: tuple[str, str]) -> str:
    source, external_id = key
    return (
        f"external id {external_id!r} from source {source!r} already names an "
        "event of another contact or type"
    )


def _build(row: Mapping) -> EngagementEvent:
    contact = row["contact"]
    contact_id = contact.pk if isinstance(contact, Contact) else contact
    return EngagementEvent(
        contact_id=contact_id,
        type=row["type"],
        occurred_at=row["occurred_at"],
        # Keys are text however a sender numbered them (a provider's 42 and
        # "42" name one event), and they are compared as text.
        source=_text(row.get("source")),
        properties=row.get("properties") or {},
        external_id=_text(row.get("external_id")),
    )


def _text(value) -> str:
    # 0 is an id like any other; only a missing value means no key.
    return "" if value is None else str(value)


def _insert(events: list[EngagementEvent], *, now: dt.datetime) -> None:
    """Insert events in their order with a few multi-row statements.

    Each stored event gets its id; an event whose key is stored already (a
    sender's retry, or a request racing this one) is skipped by the database
    (ON CONFLICT DO NOTHING) and keeps none. bulk_create prepared every
    value through its field, which cost more than the database spent
    storing the rows. SQLite (3.35+) and PostgreSQL return the new rows in
    the order given, which matters only for events without a key.
    """
    as_json, when = value_adapters()
    quote = connection.ops.quote_name
    received = when(now)
    head = (
        f"INSERT INTO {quote(EngagementEvent._meta.db_table)} "
        f"({', '.join(quote(column) for column in INSERT_COLUMNS)}) VALUES "
    )
    tail = (
        f" ON CONFLICT DO NOTHING RETURNING {quote('id')}, {quote('source')}, "
        f"{quote('external_id')}"
    )
    row_marks = f"({', '.join(['%s'] * len(INSERT_COLUMNS))})"
    size = max(max_query_params() // len(INSERT_COLUMNS), 1)
    with connection.cursor() as cursor:
        for start in range(0, len(events), size):
            chunk = events[start : start + size]
            params = []
            for event in chunk:
                event.received_at = now
                params += (
                    event.contact_id,
                    event.type,
                    event.source,
                    when(event.occurred_at),
                    received,
                    as_json(event.properties),
                    event.external_id,
                )
            cursor.execute(head + ", ".join([row_marks] * len(chunk)) + tail, params)
            keyed = {_key(e): e for e in chunk if e.external_id}
            keyless = iter([e for e in chunk if not e.external_id])
            for pk, source, external_id in cursor.fetchall():
                event = keyed[source, external_id] if external_id else next(keyless)
                event.pk = pk
                event._state.adding = False
                event._state.db = connection.alias


def _keyed_events(keys: set[tuple[str, str]]):
    """Stored events that may carry these keys, found through the key index.

    The unique index on (source, external_id) covers only events that have
    an external id, so the query must say so or the database scans them all.
    """
    return EngagementEvent.objects.filter(
        keys_in("source", {source for source, _ in keys}),
        keys_in("external_id", {external_id for _, external_id in keys}),
    ).exclude(external_id="")


def _apply_effects(events: list[EngagementEvent], *, now: dt.datetime) -> None:
    unsubscribed = {e.contact_id for e in events if e.type == E.UNSUBSCRIBE}
    bounced = {e.contact_id for e in events if is_hard_bounce(e)}
    complained = {e.contact_id for e in events if is_complaint(e)}
    # An out-of-office auto-reply pauses; it is not a reply (nor an opt-out).
    away = [e for e in events if is_out_of_office(e)]
    replied = {
        e.contact_id
        for e in events
        if e.type == E.EMAIL_REPLY and not is_out_of_office(e)
    }
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
        contacts.filter(pk__in=complained, complained_at__isnull=True).update(
            complained_at=now, do_not_email=True, updated_at=now
        )

    # A contact who can no longer be mailed leaves every cadence; a reply or
    # a meeting ends only the cadences that ask for it.
    if complained:
        exit_enrollments(complained, Reason.COMPLAINED, now=now)
    if unsubscribed:
        exit_enrollments(unsubscribed, Reason.UNSUBSCRIBED, now=now)
    if bounced:
        exit_enrollments(bounced, Reason.BOUNCED, now=now)
    if replied:
        # Read who shares the repliers' cadences before their exits end them.
        colleagues = _account_colleagues_to_stop(replied)
        exit_enrollments(
            replied,
            Reason.REPLIED,
            now=now,
            cadence_ids=_cadence_ids(exit_on_reply=True),
        )
        for cadence_id, contact_ids in colleagues.items():
            exit_enrollments(
                contact_ids, Reason.ACCOUNT_REPLIED, now=now, cadence_ids=[cadence_id]
            )
    if met:
        exit_enrollments(
            met,
            Reason.MEETING,
            now=now,
            cadence_ids=_cadence_ids(exit_on_meeting=True),
        )
    if away:
        pause_for_out_of_office(away, now=now)


def _account_colleagues_to_stop(replied: set[int]) -> dict[int, list[int]]:
    """Per cadence that stops a whole account on a reply, the colleagues to stop.

    A colleague is another contact of a replier's account; only cadences the
    replier was walking count.
    """
    walking = (
        Enrollment.objects.filter(
            contact_id__in=replied,
            state__in=[Enrollment.State.ACTIVE, Enrollment.State.PAUSED],
            cadence__stop_account_on_reply=True,
            contact__account__isnull=False,
        )
        .order_by()
        .values_list("cadence_id", "contact__account_id")
    )
    accounts_by_cadence = defaultdict(set)
    for cadence_id, account_id in walking:
        accounts_by_cadence[cadence_id].add(account_id)
    if not accounts_by_cadence:
        return {}

    all_accounts = set().union(*accounts_by_cadence.values())
    people = (
        Contact.objects.filter(account_id__in=all_accounts)
        .exclude(pk__in=replied)
        .order_by()
        .values_list("pk", "account_id")
    )
    colleagues = defaultdict(list)
    for contact_id, account_id in people:
        for cadence_id, accounts in accounts_by_cadence.items():
            if account_id in accounts:
                colleagues[cadence_id].append(contact_id)
    return colleagues


def _cadence_ids(**flags) -> list[int]:
    return list(Cadence.objects.filter(**flags).values_list("pk", flat=True))
