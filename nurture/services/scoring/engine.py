"""Fit and intent scores, and the MQL qualification they lead to.

Intent is stored as of ``intent_scored_at`` and decays exponentially with
the scoring model's half-life; new events add their points on top, so a
score never needs the contact's event history recomputed.
"""

import datetime as dt
import logging
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from django.db import transaction
from django.db.models import Prefetch

from crm.models import Contact, EngagementEvent, LifecycleStage
from crm.services import change_stage
from nurture import conf
from nurture.models import ScoringModel, ScoringRule

from .fields import as_text, contact_field_value

logger = logging.getLogger(__name__)

Op = ScoringRule.Operator

# How many intent hits a contact's explanation keeps, newest last.
EXPLAINED_INTENT_HITS = 20

# Stages from which a first crossing of the threshold makes a lead an MQL.
QUALIFYING_STAGES = (
    LifecycleStage.SUBSCRIBER,
    LifecycleStage.LEAD,
    LifecycleStage.RECYCLED,
)

SCORE_FIELDS = [
    "fit_score",
    "intent_score",
    "intent_scored_at",
    "total_score",
    "score_explanation",
    "updated_at",
]


def current_intent(contact: Contact, *, now: dt.datetime) -> float:
    """Return the contact's intent decayed from when it was stored to now."""
    model = ScoringModel.objects.filter(is_default=True).first()
    half_life = model.intent_half_life_days if model else 30.0
    return decayed(contact.intent_score, contact.intent_scored_at, now, half_life)


def decayed(
    value: float, since: dt.datetime | None, now: dt.datetime, half_life: float
) -> float:
    """Return ``value`` halved once per ``half_life`` days between then and now."""
    if not value or since is None or half_life <= 0 or now <= since:
        return value
    elapsed_days = (now - since).total_seconds() / 86400
    return value * 0.5 ** (elapsed_days / half_life)


def rescore_new_events(*, now: dt.datetime, batch_size: int | None = None) -> int:
    """Fold a batch of unscored events into their contacts' scores.

    Queries per batch are fixed: the model and rules, the events, their
    contacts, one bulk update of contacts (chunked by the database's
    parameter limit) and one update marking the events. Contacts that cross
    the MQL threshold are then qualified, a handful of queries each (rare
    next to events). Return how many events were scored.
    """
    batch_size = batch_size or conf.get("NURTURE_RESCORE_BATCH_SIZE")
    model = _default_model()
    if model is None:
        logger.warning("No default scoring model: events left unscored")
        return 0

    with transaction.atomic():
        events = list(
            EngagementEvent.objects.unscored()
            .select_for_update(skip_locked=True)
            .order_by("id")
            .values("id", "contact_id", "type", "occurred_at", "properties")[
                :batch_size
            ]
        )
        if not events:
            return 0
        by_contact = defaultdict(list)
        for event in events:
            by_contact[event["contact_id"]].append(event)
        contacts = list(
            Contact.objects.filter(pk__in=list(by_contact))
            .select_related("account")
            .select_for_update(of=("self",))
            .order_by("pk")
        )

        for contact in contacts:
            _apply(model, contact, by_contact[contact.pk], now=now)
        Contact.objects.bulk_update(contacts, SCORE_FIELDS)
        EngagementEvent.objects.filter(pk__in=[e["id"] for e in events]).update(
            scored_at=now
        )

    qualify_contacts(
        [c.pk for c in contacts if c.total_score >= model.mql_threshold],
        now=now,
        model=model,
    )
    logger.info("Scored %d events for %d contacts", len(events), len(contacts))
    return len(events)


def score_contacts(contact_ids: Iterable[int], *, now: dt.datetime) -> int:
    """Recompute fit and decay intent to now for these contacts.

    Use it after a contact's profile or the rules change. Return how many
    contacts were scored.
    """
    model = _default_model()
    if model is None:
        return 0
    with transaction.atomic():
        contacts = list(
            Contact.objects.filter(pk__in=list(contact_ids))
            .select_related("account")
            .select_for_update(of=("self",))
            .order_by("pk")
        )
        for contact in contacts:
            _apply(model, contact, [], now=now)
        Contact.objects.bulk_update(contacts, SCORE_FIELDS)

    qualify_contacts(
        [c.pk for c in contacts if c.total_score >= model.mql_threshold],
        now=now,
        model=model,
    )
    return len(contacts)


def qualify_contacts(
    contact_ids: Iterable[int],
    *,
    now: dt.datetime,
    model: ScoringModel | None = None,
) -> int:
    """Make MQLs of contacts at the threshold for the first time; hand them off.

    Costs one query to find them plus a stage change and a handoff for each
    qualified contact. Return how many qualified.
    """
    from .handoffs import hand_off

    ids = list(contact_ids)
    model = model or (_default_model() if ids else None)
    if model is None or not ids:
        return 0
    qualified = Contact.objects.filter(
        pk__in=ids,
        total_score__gte=model.mql_threshold,
        mql_at__isnull=True,
        lifecycle_stage__in=QUALIFYING_STAGES,
    ).select_related("account")

    count = waiting = 0
    for contact in qualified:
        try:
            with transaction.atomic():
                change_stage(
                    contact,
                    LifecycleStage.MQL,
                    now=now,
                    reason=f"score {contact.total_score} reached the MQL "
                    f"threshold of {model.mql_threshold}",
                )
                handoff = hand_off(contact, now=now)
        except Exception:
            # One contact's failure must not stop the others; the next
            # rescoring of this contact tries again.
            logger.exception("Qualification failed", extra={"contact_id": contact.pk})
            continue
        count += 1
        waiting += handoff is None
    if count:
        logger.info("Qualified %d contacts as MQL", count)
    if waiting:
        logger.warning(
            "%d new MQLs wait for a rep with free capacity; they are handed "
            "off as handoffs are decided",
            waiting,
        )
    return count


def _default_model() -> ScoringModel | None:
    return (
        ScoringModel.objects.filter(is_default=True)
        .prefetch_related(_active_rules())
        .first()
    )


def _active_rules() -> Prefetch:
    return Prefetch(
        "rules",
        queryset=ScoringRule.objects.filter(is_active=True).order_by("pk"),
        to_attr="active_rules",
    )


def _apply(
    model: ScoringModel, contact: Contact, events: list[dict], *, now: dt.datetime
) -> None:
    """Set a contact's scores in memory from its profile and new events."""
    fit_rules = [r for r in model.active_rules if r.kind == ScoringRule.Kind.FIT]
    intent_rules = [r for r in model.active_rules if r.kind == ScoringRule.Kind.INTENT]
    half_life = model.intent_half_life_days
    stamp = now.isoformat()

    fit_hits = [
        {"rule": r.name, "kind": "fit", "points": r.points, "at": stamp}
        for r in fit_rules
        if compare(r.operator, contact_field_value(contact, r.field), r.value)
    ]
    intent = decayed(contact.intent_score, contact.intent_scored_at, now, half_life)
    intent_hits = [
        hit for hit in contact.score_explanation or [] if hit.get("kind") == "intent"
    ]
    for event in events:
        for rule in intent_rules:
            if not event_matches(rule, event):
                continue
            # An event reported late has already lost part of its weight.
            intent += decayed(rule.points, event["occurred_at"], now, half_life)
            intent_hits.append(
                {
                    "rule": rule.name,
                    "kind": "intent",
                    "points": rule.points,
                    "at": event["occurred_at"].isoformat(),
                }
            )

    contact.fit_score = sum(hit["points"] for hit in fit_hits)
    contact.intent_score = intent
    contact.intent_scored_at = now
    contact.total_score = contact.fit_score + round(intent)
    contact.score_explanation = fit_hits + intent_hits[-EXPLAINED_INTENT_HITS:]
    contact.updated_at = now


def event_matches(rule: ScoringRule, event: dict) -> bool:
    """Say whether an intent rule scores an event (type, then property test)."""
    if event["type"] != rule.event_type:
        return False
    if not rule.field:
        return True
    return compare(
        rule.operator, (event["properties"] or {}).get(rule.field), rule.value
    )


def compare(operator: str, actual: Any, expected: str) -> bool:
    """Apply a rule operator: text tests ignore case, gte/lte compare numbers."""
    if operator == Op.IS_SET:
        return _is_set(actual)
    if operator == Op.IS_BLANK:
        return not _is_set(actual)
    if operator == Op.IS_TRUE:
        return actual is True or as_text(actual) in {"true", "yes", "1", "y"}
    if operator in (Op.GTE, Op.LTE):
        try:
            number, bound = float(actual), float(expected)
        except (TypeError, ValueError):
            return False
        return number >= bound if operator == Op.GTE else number <= bound

    text = as_text(actual)
    if operator == Op.EQUALS:
        return text == as_text(expected)
    if operator == Op.IN:
        return text in {as_text(v) for v in expected.split(",")} - {""}
    if operator == Op.CONTAINS:
        return bool(expected.strip()) and as_text(expected) in text
    return False


def _is_set(value: Any) -> bool:
    if isinstance(value, bool):
        return True
    return value is not None and as_text(value) != ""
