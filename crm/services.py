"""Domain actions on crm records."""

import datetime as dt
import logging
from collections.abc import Callable, Iterable

from django.db import transaction
from django.db.models import DateTimeField, Value
from django.db.models.functions import Coalesce

from .models import Contact, LifecycleStage, StageChange

logger = logging.getLogger(__name__)

S = LifecycleStage

# Which stage may follow which. Recycled and disqualified are side states:
# a recycled lead can be worked again; a disqualified one can be revived.
ALLOWED_TRANSITIONS: dict[str, frozenset[str]] = {
    S.SUBSCRIBER: frozenset({S.LEAD, S.MQL, S.SQL, S.DISQUALIFIED}),
    S.LEAD: frozenset({S.MQL, S.SQL, S.RECYCLED, S.DISQUALIFIED}),
    S.MQL: frozenset({S.SQL, S.RECYCLED, S.DISQUALIFIED}),
    S.SQL: frozenset({S.OPPORTUNITY, S.RECYCLED, S.DISQUALIFIED}),
    S.OPPORTUNITY: frozenset({S.CUSTOMER, S.RECYCLED, S.DISQUALIFIED}),
    S.CUSTOMER: frozenset({S.OPPORTUNITY}),
    S.RECYCLED: frozenset({S.LEAD, S.MQL, S.SQL, S.DISQUALIFIED}),
    S.DISQUALIFIED: frozenset({S.LEAD, S.RECYCLED}),
}


def decayed(
    value: float, since: dt.datetime | None, now: dt.datetime, half_life: float
) -> float:
    """Return ``value`` halved once per ``half_life`` days between then and now.

    Scores store intent as of a moment; this is how any reader brings it to
    now (nurture's scoring uses the same function).
    """
    if not value or since is None or half_life <= 0 or now <= since:
        return value
    elapsed_days = (now - since).total_seconds() / 86400
    return value * 0.5 ** (elapsed_days / half_life)


class StageTransitionError(ValueError):
    """A lifecycle move the rules do not allow."""

    field = "lifecycle_stage"


def change_stage(
    contact: Contact,
    to_stage: str,
    *,
    now: dt.datetime,
    actor=None,
    reason: str = "",
) -> StageChange | None:
    """Move a contact to another lifecycle stage and record the move.

    Return None when the contact is already there; raise
    StageTransitionError for a move the lifecycle does not allow. Moving to
    recycled clears ``mql_at`` and ``sql_at``, which re-arms the MQL and SQL
    thresholds; nothing else is lost.
    """
    from_stage = contact.lifecycle_stage
    if from_stage == to_stage:
        return None
    if to_stage not in ALLOWED_TRANSITIONS.get(from_stage, frozenset()):
        raise StageTransitionError(
            f"a contact cannot move from {from_stage!r} to {to_stage!r}"
        )

    update_fields = ["lifecycle_stage", "updated_at"]
    contact.lifecycle_stage = to_stage
    if to_stage == S.MQL and contact.mql_at is None:
        contact.mql_at = now
        update_fields.append("mql_at")
    if to_stage == S.SQL and contact.sql_at is None:
        contact.sql_at = now
        update_fields.append("sql_at")
    if to_stage == S.RECYCLED:
        # Re-arm the thresholds: the next crossing qualifies the lead again.
        # When it qualified before stays in the StageChange history.
        contact.mql_at = contact.sql_at = None
        update_fields += ["mql_at", "sql_at"]
    with transaction.atomic():
        contact.save(update_fields=update_fields)
        change = StageChange.objects.create(
            contact=contact,
            from_stage=from_stage,
            to_stage=to_stage,
            changed_at=now,
            actor=actor,
            reason=reason[:255],
        )
    logger.info(
        "Contact moved from %s to %s",
        from_stage,
        to_stage,
        extra={"contact_id": contact.pk},
    )
    return change


def change_stages(
    contacts: Iterable[Contact],
    to_stage: str,
    *,
    now: dt.datetime,
    actor=None,
    reason: str | Callable[[Contact], str] = "",
) -> list[StageChange]:
    """Move many contacts to one stage as ``change_stage`` moves each.

    Contacts already there are left alone; a move the lifecycle does not
    allow raises StageTransitionError before anything is written. The
    contacts are updated set-based and their StageChange rows inserted in
    bulk, so the batch costs a few queries however many it holds. ``reason``
    is one text or a function giving each contact's. Return the changes
    recorded, in the order of the contacts.
    """
    moving = {}
    for contact in contacts:
        if contact.lifecycle_stage == to_stage:
            continue
        if to_stage not in ALLOWED_TRANSITIONS.get(contact.lifecycle_stage, ()):
            raise StageTransitionError(
                f"a contact cannot move from {contact.lifecycle_stage!r} "
                f"to {to_stage!r}"
            )
        moving.setdefault(contact.pk, contact)
    if not moving:
        return []

    changes = [
        StageChange(
            contact=contact,
            from_stage=contact.lifecycle_stage,
            to_stage=to_stage,
            changed_at=now,
            actor=actor,
            reason=(reason(contact) if callable(reason) else reason)[:255],
        )
        for contact in moving.values()
    ]
    changed = {"lifecycle_stage": to_stage, "updated_at": now}
    stamp = {S.MQL: "mql_at", S.SQL: "sql_at"}.get(to_stage)
    if to_stage == S.RECYCLED:
        # Re-arm the thresholds, as change_stage does.
        changed.update(mql_at=None, sql_at=None)
    with transaction.atomic():
        update = dict(changed)
        if stamp:
            # Only the first crossing is stamped; a stamp already set stays.
            update[stamp] = Coalesce(stamp, Value(now, output_field=DateTimeField()))
        Contact.objects.filter(pk__in=list(moving)).update(**update)
        StageChange.objects.bulk_create(changes)

    for contact in moving.values():
        for name, value in changed.items():
            setattr(contact, name, value)
        if stamp and getattr(contact, stamp) is None:
            setattr(contact, stamp, now)
    logger.info("Moved %d contacts to %s", len(moving), to_stage)
    return changes
