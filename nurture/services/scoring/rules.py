"""Pure scoring helpers: how a rule reads a value, tests it and counts points.

Nothing here touches the database, so the evaluation command and the learned
model can call these on plain objects and dicts.

Derived fields a rule may name besides the contact's own (see
``rule_value``):

- ``email_domain``: the part of the email after the @, for competitor lists
  (operator ``in``) and student addresses (``contains`` ``.edu``);
- ``account__employee_band``: the account's head count as a band label
  (``1-10``, ``11-50``, ``51-200``, ``201-1000``, ``1001-5000``, ``5001+``);
- ``account__technographics``: a list; ``contains``, ``in`` and ``equals``
  test whether any listed technology matches.

Intent caps: ``max_points`` limits the points one rule gives one contact.
With ``cap_period_days`` the cap applies per fixed period that opens at the
first counted hit and lasts that many days (measured on event time); the
next hit after it opens a new period. Without a period the cap is for life.
"""

import datetime as dt
import functools
from collections.abc import Callable, Iterable
from typing import Any

from crm.services import decayed  # noqa: F401 (shared with crm readers)
from nurture.models import ScoringRule

from ..fields import as_text, field_getter

Op = ScoringRule.Operator

# (upper bound inclusive, label) for account__employee_band.
EMPLOYEE_BANDS = (
    (10, "1-10"),
    (50, "11-50"),
    (200, "51-200"),
    (1000, "201-1000"),
    (5000, "1001-5000"),
)
LARGEST_BAND = "5001+"


def employee_band(count: int | None) -> str:
    """Name the head-count band an employee count falls in ("" if unknown)."""
    if count is None:
        return ""
    for upper, label in EMPLOYEE_BANDS:
        if count <= upper:
            return label
    return LARGEST_BAND


def rule_value(contact, field: str) -> Any:
    """Return what a fit rule's ``field`` reads for a contact, derived or not."""
    return field_reader(field)(contact)


@functools.cache
def field_reader(field: str) -> Callable[[Any], Any]:
    """Return a function reading a rule's ``field`` from a contact.

    Scoring reads the same few fields of thousands of contacts, so the
    field name is parsed once, not once per contact.
    """
    if field == "email_domain":
        return _email_domain
    if field == "account__employee_band":
        return _employee_band_of
    return field_getter(field)


def _email_domain(contact) -> str:
    email = getattr(contact, "email", "") or ""
    return email.rpartition("@")[2] if "@" in email else ""


def _employee_band_of(contact) -> str:
    account = contact.account if contact.account_id else None
    return employee_band(account.employee_count) if account else ""


def account_value(account, field: str) -> Any:
    """Return what an ``account__`` rule reads for an account on its own."""
    name = field.removeprefix("account__")
    if name == "employee_band":
        return employee_band(account.employee_count)
    if name.startswith("_"):
        return None
    return getattr(account, name, None)


def fit_hits(
    rules: list[ScoringRule],
    contact,
    *,
    now: dt.datetime,
    memo: dict | None = None,
) -> list[dict]:
    """Return an explanation entry for every fit rule the contact meets.

    Pass the same ``memo`` dict for many contacts (and the same ``now``):
    contacts share a few values per field, so each rule tests each distinct
    value once, and contacts alike in every field the rules read share
    their entries (which nobody may change).
    """
    values = tuple(field_reader(r.field)(contact) for r in rules)
    key = None
    if memo is not None:
        try:
            # Types too: True and 1 are equal keys but not equal text.
            key = (id(rules), values, tuple(map(type, values)))
            if key in memo:
                return list(memo[key])
        except TypeError:
            key = None  # a list or dict value: test it afresh
    stamp = now.isoformat()
    hits = [
        {"rule": r.name, "kind": "fit", "points": r.points, "at": stamp}
        for r, value in zip(rules, values, strict=True)
        if _meets(r, value, memo)
    ]
    if key is not None:
        memo[key] = hits
    return list(hits)


def _meets(rule: ScoringRule, value: Any, memo: dict | None) -> bool:
    if memo is None or not isinstance(value, str | int | float | bool | None):
        return compare(rule.operator, value, rule.value)
    key = (id(rule), type(value), value)
    if key not in memo:
        memo[key] = compare(rule.operator, value, rule.value)
    return memo[key]


def event_matches(rule: ScoringRule, event: dict) -> bool:
    """Say whether an intent rule scores an event (type, then property test)."""
    if event["type"] != rule.event_type:
        return False
    if not rule.field:
        return True
    return compare(
        rule.operator, (event["properties"] or {}).get(rule.field), rule.value
    )


def capped_points(
    rule: ScoringRule, rule_points: dict, occurred_at: dt.datetime
) -> int:
    """Return the points a hit may still count under the rule's cap.

    Update ``rule_points`` (rule id -> [period start, points counted]) in
    place with what was counted.
    """
    if not rule.max_points:
        return rule.points
    key = str(rule.pk)
    start, used = rule_points.get(key) or (None, 0)
    if start is not None and rule.cap_period_days:
        opened = dt.datetime.fromisoformat(start)
        if occurred_at >= opened + dt.timedelta(days=rule.cap_period_days):
            start, used = None, 0

    room = max(rule.max_points - used, 0)
    counted = min(abs(rule.points), room)
    if counted:
        rule_points[key] = [start or occurred_at.isoformat(), used + counted]
    return counted if rule.points >= 0 else -counted


def compare(operator: str, actual: Any, expected: str) -> bool:
    """Apply a rule operator: text tests ignore case, gte/lte compare numbers.

    ``contains`` and ``in`` take a comma-separated list and match any item;
    a list value (technographics) matches when any of its items does.
    """
    if isinstance(actual, list | tuple | set):
        if operator == Op.IS_SET:
            return bool(actual)
        if operator == Op.IS_BLANK:
            return not actual
        return any(compare(operator, item, expected) for item in actual)
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
        return text in _items(expected)
    if operator == Op.CONTAINS:
        return any(item in text for item in _items(expected))
    return False


def _items(expected: str) -> set[str]:
    return {as_text(v) for v in expected.split(",")} - {""}


def _is_set(value: Any) -> bool:
    if isinstance(value, bool):
        return True
    return value is not None and as_text(value) != ""


def is_hand_raise(event: dict, specs: Iterable[str]) -> bool:
    """Say whether an event is a hand-raise under NURTURE_HAND_RAISE_EVENTS.

    A spec is an event type (``demo_request``) or a type with one property
    test (``form_submit:form=pricing``, compared ignoring case).
    """
    for spec in specs:
        event_type, _, test = spec.partition(":")
        if event["type"] != event_type.strip():
            continue
        if not test:
            return True
        key, _, value = test.partition("=")
        actual = (event["properties"] or {}).get(key.strip())
        if as_text(actual) == as_text(value):
            return True
    return False
