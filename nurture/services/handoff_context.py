"""Snapshot what a rep needs to pick up a lead, for one handoff or many.

The snapshot is built from history read for the whole batch at once: a
fixed number of ``in`` queries (recent events, content downloads, touches,
open tasks, accounts, the accounts' open handoffs, the default scoring
model), however many contacts the batch holds. ``build_context`` is the
same code for a batch of one.
"""

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

from django.db.models import F, Window
from django.db.models.functions import RowNumber

from crm.models import Account, Contact, EngagementEvent
from crm.services import decayed
from nurture.models import Handoff, ScoringModel, Task, Touch

# How much history the context snapshot keeps.
CONTEXT_EVENTS = 10
CONTEXT_CONTENT = 20
CONTEXT_TOUCHES = 20
CONTEXT_ACCOUNT_HANDOFFS = 20

# The half-life intent decays by when there is no default scoring model.
DEFAULT_HALF_LIFE_DAYS = 30.0


@dataclass
class ContextHistory:
    """History of a batch of contacts, grouped by contact (or account) id."""

    half_life: float = DEFAULT_HALF_LIFE_DAYS
    events: dict[int, list] = field(default_factory=lambda: defaultdict(list))
    content: dict[int, list] = field(default_factory=lambda: defaultdict(list))
    touches: dict[int, list] = field(default_factory=lambda: defaultdict(list))
    tasks: dict[int, list] = field(default_factory=lambda: defaultdict(list))
    account_handoffs: dict[int, list] = field(default_factory=lambda: defaultdict(list))


def build_context(contact: Contact, *, now: dt.datetime) -> dict:
    """Snapshot what a rep needs to pick up the lead.

    Score and why, recent engagement, content consumed, the cadence touches
    already made with their outcomes, open tasks, the contact's and the
    account's attributes, and the account's other open handoffs. The
    outcome held out from the source system is never part of it, nor are
    email addresses or phone numbers (the contact page has those).
    """
    return build_contexts([contact], now=now)[contact.pk]


def build_contexts(contacts: Iterable[Contact], *, now: dt.datetime) -> dict:
    """Snapshot the context of each contact, keyed by contact id.

    Reads the batch's history in a fixed number of queries (see
    ``load_history``); each snapshot is what ``build_context`` gives.
    """
    contacts = list(contacts)
    history = load_history(contacts)
    return {contact.pk: context_from(contact, history, now=now) for contact in contacts}


def load_history(contacts: list[Contact]) -> ContextHistory:
    """Read what the snapshots of a batch need, in one query per kind.

    Accounts the contacts do not hold loaded yet are read in one query and
    attached to them.
    """
    history = ContextHistory()
    ids = [contact.pk for contact in contacts]
    if not ids:
        return history
    _attach_accounts(contacts)

    model = ScoringModel.objects.filter(is_default=True).first()
    if model is not None:
        history.half_life = model.intent_half_life_days

    recent = _latest(
        EngagementEvent.objects.filter(contact_id__in=ids),
        CONTEXT_EVENTS,
        "-occurred_at",
        "-id",
    )
    for event in recent:
        history.events[event.contact_id].append(event)
    downloads = _latest(
        EngagementEvent.objects.filter(
            contact_id__in=ids, type=EngagementEvent.Type.CONTENT_DOWNLOAD
        ),
        CONTEXT_CONTENT,
        "-occurred_at",
        "-id",
    )
    for event in downloads:
        history.content[event.contact_id].append(event)
    touches = _latest(
        Touch.objects.filter(contact_id__in=ids).select_related("step__cadence"),
        CONTEXT_TOUCHES,
        "-created_at",
        "-id",
    )
    for touch in touches:
        history.touches[touch.contact_id].append(touch)
    open_tasks = Task.objects.open().filter(contact_id__in=ids)
    for task in open_tasks.order_by("due_at", "id"):
        history.tasks[task.contact_id].append(task)

    account_ids = {contact.account_id for contact in contacts if contact.account_id}
    if account_ids:
        others = (
            Handoff.objects.pending()
            .filter(contact__account_id__in=account_ids)
            .select_related("contact", "assignee")
            .order_by("created_at", "id")
        )
        for other in others:
            history.account_handoffs[other.contact.account_id].append(other)
    return history


def _latest(queryset, limit: int, *ordering: str) -> list:
    """Return each contact's newest ``limit`` rows, newest first, in one query."""
    order = [
        F(name[1:]).desc() if name.startswith("-") else F(name) for name in ordering
    ]
    ranked = queryset.annotate(
        position=Window(RowNumber(), partition_by=F("contact_id"), order_by=order)
    )
    return list(ranked.filter(position__lte=limit).order_by("contact_id", *ordering))


def _attach_accounts(contacts: list[Contact]) -> None:
    missing = {
        contact.account_id
        for contact in contacts
        if contact.account_id and not Contact.account.is_cached(contact)
    }
    if not missing:
        return
    accounts = Account.objects.in_bulk(missing)
    for contact in contacts:
        if contact.account_id in accounts and not Contact.account.is_cached(contact):
            contact.account = accounts[contact.account_id]


def context_from(
    contact: Contact, history: ContextHistory, *, now: dt.datetime
) -> dict:
    """Build one contact's snapshot from a batch's preloaded history."""
    intent = decayed(
        contact.intent_score, contact.intent_scored_at, now, history.half_life
    )
    account = contact.account if contact.account_id else None
    return {
        "score": {
            "fit": contact.fit_score,
            "intent": round(intent, 1),
            "total": contact.total_score,
            "explanation": contact.score_explanation,
        },
        "account": account.name if account else "",
        "lifecycle_stage": contact.lifecycle_stage,
        "lead_source": contact.lead_source,
        "contact_attributes": {
            "title": contact.title,
            "occupation": contact.occupation,
            "specialization": contact.specialization,
            "city": contact.city,
            "country": contact.country,
            "time_zone": contact.time_zone,
            "lead_origin": contact.lead_origin,
            "mql_at": _iso(contact.mql_at),
        },
        # TODO(#5): no enrichment provider yet; the imported attributes stand
        # in. Remove when an enrichment service fills this.
        "enrichment": contact.attributes,
        "account_attributes": _account_attributes(account),
        "events": [
            {
                "type": event.type,
                "occurred_at": event.occurred_at.isoformat(),
                "properties": event.properties,
            }
            for event in history.events.get(contact.pk, [])
        ],
        "content": [
            {
                "title": str(
                    event.properties.get("title")
                    or event.properties.get("asset")
                    or event.properties.get("url")
                    or "Content download"
                ),
                "occurred_at": event.occurred_at.isoformat(),
            }
            for event in history.content.get(contact.pk, [])
        ],
        "touches": [
            {
                "step": str(touch.step),
                "channel": touch.channel,
                "status": touch.status,
                "outcome": touch.outcome,
                "sent_at": _iso(touch.sent_at),
                "opened_at": _iso(touch.opened_at),
                "clicked_at": _iso(touch.clicked_at),
                "replied_at": _iso(touch.replied_at),
                "bounced_at": _iso(touch.bounced_at),
            }
            for touch in history.touches.get(contact.pk, [])
            if touch.status != Touch.Status.SKIPPED
        ],
        "open_tasks": [
            {"type": task.type, "title": task.title, "due_at": task.due_at.isoformat()}
            for task in history.tasks.get(contact.pk, [])
        ],
        "account_open_handoffs": account_handoff_entries(
            contact, history.account_handoffs.get(contact.account_id, [])
        ),
    }


def account_handoff_entries(contact: Contact, handoffs: list[Handoff]) -> list[dict]:
    """Describe the account's open handoffs other than the contact's own."""
    if not contact.account_id:
        return []
    others = [other for other in handoffs if other.contact_id != contact.pk]
    return [handoff_entry(other) for other in others[:CONTEXT_ACCOUNT_HANDOFFS]]


def handoff_entry(handoff: Handoff) -> dict:
    """Describe one open handoff as a colleague's snapshot lists it."""
    return {
        "handoff_id": handoff.pk,
        "contact": str(handoff.contact),
        "assignee": str(handoff.assignee) if handoff.assignee else "",
        "status": handoff.status,
        "created_at": handoff.created_at.isoformat(),
        "sla_due_at": handoff.sla_due_at.isoformat(),
    }


def _account_attributes(account) -> dict:
    if account is None:
        return {}
    return {
        "name": account.name,
        "domain": account.domain,
        "industry": account.industry,
        "employee_count": account.employee_count,
        "annual_revenue": (
            str(account.annual_revenue) if account.annual_revenue is not None else None
        ),
        "country": account.country,
        "tier": account.tier,
        "technographics": account.technographics,
    }


def _iso(value: dt.datetime | None) -> str | None:
    return value.isoformat() if value else None
