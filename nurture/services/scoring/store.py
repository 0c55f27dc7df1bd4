"""Read and write a scoring batch as plain rows with a few raw statements.

A batch touches about as many contacts as it has events. Building a model
instance per contact and per score, and letting bulk_create compile every
value of the score upsert, cost more than the scoring itself, so a batch
reads tuples and writes with one executemany per table. Both SQLite and
PostgreSQL understand ``INSERT ... ON CONFLICT ... DO UPDATE``.
"""

import datetime as dt
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from types import SimpleNamespace

from django.core.exceptions import FieldDoesNotExist
from django.db import connection

from crm.models import Account, Contact, EngagementEvent
from nurture.models import ContactScore, ScoringModel

from .. import learning
from ..batching import value_adapters
from ..fields import HIDDEN_FIELDS
from ..ids import ids_in

# What scoring reads of an event.
EVENT_FIELDS = ("id", "contact_id", "type", "occurred_at", "properties")

# Every contact row carries these; rules add the columns they read.
BASE_COLUMNS = ("id", "account_id", "intent_score", "intent_scored_at")

SCORE_COLUMNS = (
    "fit_score",
    "intent_score",
    "intent_scored_at",
    "total_score",
    "explanation",
    "rule_points",
    "updated_at",
)

# ContactScore column -> the Contact column the default model mirrors it to.
MIRROR_COLUMNS = (
    ("fit_score", "fit_score"),
    ("intent_score", "intent_score"),
    ("intent_scored_at", "intent_scored_at"),
    ("total_score", "total_score"),
    ("explanation", "score_explanation"),
)


@dataclass(slots=True)
class Score:
    """A contact's score under one model, as scoring reads and writes it."""

    contact_id: int
    model_id: int
    fit_score: int = 0
    intent_score: float = 0.0
    intent_scored_at: dt.datetime | None = None
    total_score: int = 0
    explanation: list = field(default_factory=list)
    rule_points: dict = field(default_factory=dict)
    updated_at: dt.datetime | None = None


def rule_columns(models: list[ScoringModel]) -> tuple[set, set] | None:
    """Return the contact and account columns the models' rules read.

    None when a rule names something only a model instance answers (a
    property or a relation), so the caller loads instances instead.
    """
    contact_columns, account_columns = set(BASE_COLUMNS), set()
    names = [rule.field for model in models for rule in model.fit_rules]
    if any(model.use_learned for model in models):
        names += [*learning.CATEGORICAL_FIELDS, *learning.FLAG_FIELDS]
    for name in names:
        if name == "email_domain":
            contact_columns.add("email")
        elif name.startswith("attributes."):
            contact_columns.add("attributes")
        elif name.startswith("account__"):
            attribute = name.removeprefix("account__")
            if attribute == "employee_band":
                attribute = "employee_count"
            column = _column(Account, attribute)
            if column is None:
                return None
            account_columns.add(column)
        else:
            column = _column(Contact, name)
            if column is None:
                return None
            contact_columns.add(column)
    contact_columns.discard("")
    account_columns.discard("")
    return contact_columns, account_columns


def _column(model, name: str) -> str | None:
    """Name the column ``getattr(instance, name)`` reads; "" reads as None."""
    if name in HIDDEN_FIELDS or name.startswith("_"):
        return ""
    try:
        model_field = model._meta.get_field(name)
    except FieldDoesNotExist:
        return None if hasattr(model, name) else ""
    if not model_field.concrete:
        return None
    if model_field.is_relation and name != model_field.attname:
        return None
    return name


def load_contacts(contact_ids: Iterable[int], columns: tuple[set, set]) -> list:
    """Lock and read contacts as rows with the attributes rules read.

    Each row answers ``getattr`` like a Contact for those columns, with
    ``account`` a row of the account's columns (or None).
    """
    contact_columns, account_columns = columns
    account_lookups = [f"account__{name}" for name in account_columns]
    rows = (
        Contact.objects.filter(ids_in("pk", contact_ids))
        .select_for_update(of=("self",))
        .order_by("pk")
        .values(*contact_columns, *account_lookups)
    )
    contacts = []
    for values in rows:
        contact = SimpleNamespace(**{name: values[name] for name in contact_columns})
        contact.pk = contact.id
        contact.account = (
            SimpleNamespace(
                pk=contact.account_id,
                **{name: values[f"account__{name}"] for name in account_columns},
            )
            if contact.account_id
            else None
        )
        contacts.append(contact)
    return contacts


def load_explanations(contact_ids: list[int]) -> dict[int, list]:
    """Read the contacts' own stored explanations (to seed a first score)."""
    if not contact_ids:
        return {}
    return dict(
        Contact.objects.filter(pk__in=contact_ids).values_list(
            "pk", "score_explanation"
        )
    )


def load_scores(
    contact_ids: list[int], model_ids: list[int]
) -> dict[tuple[int, int], Score]:
    """Read the stored scores of these contacts under these models.

    ``updated_at`` (last of SCORE_COLUMNS) is left unread: scoring sets it.
    """
    rows = _fetch(
        ContactScore.objects.filter(
            ids_in("contact_id", contact_ids), ids_in("model_id", model_ids)
        ).values_list("contact_id", "model_id", *SCORE_COLUMNS[:-1])
    )
    scores = {}
    for contact_id, model_id, fit, intent, at, total, explanation, points in rows:
        scores[contact_id, model_id] = Score(
            contact_id,
            model_id,
            fit,
            intent,
            aware(at),
            total,
            decoded(explanation),
            _mapping(decoded(points)),
        )
    return scores


def _mapping(value) -> dict:
    # Capped points are scoring's own bookkeeping: anything but a mapping
    # (written by hand, say) reads as nothing counted yet.
    return value if isinstance(value, dict) else {}


def unscored_events(batch_size: int) -> list[dict]:
    """Lock and read the oldest unscored events (those no other worker holds)."""
    rows = _fetch(
        EngagementEvent.objects.unscored()
        .select_for_update(skip_locked=True)
        .order_by("id")
        .values_list(*EVENT_FIELDS)[:batch_size]
    )
    return [
        {
            "id": pk,
            "contact_id": contact_id,
            "type": type_,
            "occurred_at": aware(occurred_at),
            "properties": decoded(properties),
        }
        for pk, contact_id, type_, occurred_at, properties in rows
    ]


def _fetch(queryset) -> list[tuple]:
    """Run a queryset's SQL and return its raw rows.

    A scoring batch reads thousands of rows of a few known columns; passing
    each value through the ORM's generic converters cost more than the
    query, so callers convert the two kinds that need it themselves
    (``aware``, ``decoded``).
    """
    sql, params = queryset.query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


def aware(value) -> dt.datetime | None:
    """Turn a stored datetime into an aware one.

    PostgreSQL hands back aware datetimes; SQLite the naive UTC value Django
    wrote (parsed by the driver, or as text where it was not).
    """
    if value is None:
        return None
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def decoded(value):
    """Turn a stored JSON value into Python (drivers may have done it)."""
    if isinstance(value, str | bytes):
        return json.loads(value)
    return value


def load_history(contact_ids: list[int]) -> dict[int, list[dict]]:
    """Read the contacts' already scored events, oldest first."""
    history: dict[int, list[dict]] = {}
    if not contact_ids:
        return history
    rows = (
        EngagementEvent.objects.filter(
            contact_id__in=contact_ids, scored_at__isnull=False
        )
        .order_by("occurred_at", "id")
        .values("contact_id", "type", "properties")
    )
    for row in rows:
        history.setdefault(row["contact_id"], []).append(row)
    return history


def upsert_scores(scores: list[Score]) -> dict[int, object]:
    """Store new and existing scores alike in one executemany.

    Return each score's explanation as adapted for the database, by the
    score's id(), so mirroring it onto the contact need not encode it again.
    """
    if not scores:
        return {}
    ops = connection.ops
    quote = ops.quote_name
    columns = ("contact_id", "model_id", *SCORE_COLUMNS)
    sql = (
        f"INSERT INTO {quote(ContactScore._meta.db_table)} "
        f"({', '.join(quote(c) for c in columns)}) "
        f"VALUES ({', '.join(['%s'] * len(columns))}) "
        f"ON CONFLICT ({quote('contact_id')}, {quote('model_id')}) DO UPDATE SET "
        + ", ".join(f"{quote(c)} = EXCLUDED.{quote(c)}" for c in SCORE_COLUMNS)
    )
    as_json, when = value_adapters()
    explained = {id(s): as_json(s.explanation) for s in scores}
    params = [
        (
            s.contact_id,
            s.model_id,
            s.fit_score,
            s.intent_score,
            when(s.intent_scored_at),
            s.total_score,
            explained[id(s)],
            as_json(s.rule_points),
            when(s.updated_at),
        )
        for s in scores
    ]
    with connection.cursor() as cursor:
        cursor.executemany(sql, params)
    return explained


def mirror_scores(
    scores: list[Score], *, now: dt.datetime, explained: dict | None = None
) -> None:
    """Copy the default model's scores onto their contacts in one executemany.

    ``explained`` holds explanations already adapted (see upsert_scores).
    """
    if not scores:
        return
    explained = explained or {}
    ops = connection.ops
    quote = ops.quote_name
    sets = ", ".join(f"{quote(target)} = %s" for _, target in MIRROR_COLUMNS)
    sql = (
        f"UPDATE {quote(Contact._meta.db_table)} SET {sets}, "
        f"{quote('updated_at')} = %s WHERE {quote('id')} = %s"
    )
    as_json, when = value_adapters()
    stamp = when(now)
    params = [
        (
            s.fit_score,
            s.intent_score,
            when(s.intent_scored_at),
            s.total_score,
            explained[id(s)] if id(s) in explained else as_json(s.explanation),
            stamp,
            s.contact_id,
        )
        for s in scores
    ]
    with connection.cursor() as cursor:
        cursor.executemany(sql, params)


def mark_scored(event_ids: list[int], *, now: dt.datetime) -> None:
    """Stamp the events as scored in one update.

    A batch read in id order is usually a run of consecutive ids; then a
    range says the same as a list of ids and costs the database less.
    """
    if not event_ids:
        return
    first, last = event_ids[0], event_ids[-1]
    events = EngagementEvent.objects.all()
    if last - first + 1 == len(event_ids):
        events = events.filter(pk__gte=first, pk__lte=last)
    else:
        events = events.filter(pk__in=event_ids)
    events.update(scored_at=now)
