"""Choose the rep who should own a contact, by routing rules and rep load."""

import datetime as dt
import logging
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from django.db import transaction
from django.db.models import Count, Exists, OuterRef

from crm.models import Contact, Rep
from nurture.models import Handoff, RoutingRule

from .fields import as_text, contact_field_value

logger = logging.getLogger(__name__)

# Sorts before any real assignment time: a rep never assigned goes first.
NEVER = dt.datetime.min.replace(tzinfo=dt.UTC)


@dataclass(frozen=True)
class RoutingDecision:
    """Which rule matched, which rep was chosen and why."""

    rule: RoutingRule | None
    rep: Rep | None
    user: object | None
    reason: str


def route_contact(contact: Contact, *, now: dt.datetime) -> RoutingDecision:
    """Decide which rep should own a contact; change nothing.

    The caller records the assignment (see ``record_assignment``) so that
    round robin moves on.
    """
    router = Router.load()
    return router.route(contact)


def record_assignment(rep: Rep, *, now: dt.datetime) -> None:
    """Remember that a rep just got a lead, so round robin passes them by."""
    Rep.objects.filter(pk=rep.pk).update(last_assigned_at=now)
    rep.last_assigned_at = now


def assign_owners(contacts: Iterable[Contact], *, now: dt.datetime) -> int:
    """Give every ownerless contact a rep by the routing rules, in bulk.

    Rules, reps and their open handoffs are read once for the whole batch;
    the batch is then balanced in memory, so the query count depends on the
    number of reps that receive contacts, not on the number of contacts.
    Return how many contacts got an owner.
    """
    ids = [c.pk for c in contacts if c.owner_id is None]
    if not ids:
        return 0
    ownerless = list(
        Contact.objects.filter(pk__in=ids, owner__isnull=True)
        .select_related("account")
        .order_by("pk")
    )
    router = Router.load()

    by_user: dict[int, list[int]] = defaultdict(list)
    reps: dict[int, Rep] = {}
    for contact in ownerless:
        decision = router.route(contact)
        if decision.rep is None:
            logger.warning(
                "No rep for contact: %s",
                decision.reason,
                extra={"contact_id": contact.pk},
            )
            continue
        router.take(decision.rep, now=now)
        by_user[decision.rep.user_id].append(contact.pk)
        reps[decision.rep.pk] = decision.rep

    # The owner__isnull guard keeps an owner set meanwhile by someone else.
    assigned = 0
    with transaction.atomic():
        for user_id, contact_ids in by_user.items():
            assigned += Contact.objects.filter(
                pk__in=contact_ids, owner__isnull=True
            ).update(owner_id=user_id, updated_at=now)
        if reps:
            Rep.objects.filter(pk__in=list(reps)).update(last_assigned_at=now)
    logger.info("Assigned owners to %d contacts", assigned)
    return assigned


class Router:
    """Rules and rep load held in memory so a batch routes without queries.

    Load is open handoffs per unit of capacity. Reps who manage others are
    left out of the region pools. Contacts routed by this
    router count towards the order (so a batch spreads out) but not towards
    capacity, which limits open handoffs only.
    """

    def __init__(
        self,
        rules: list[RoutingRule],
        reps: list[Rep],
        open_handoffs: dict[int, int],
    ):
        self.rules = rules
        self.reps = {rep.pk: rep for rep in reps}
        self.open = {rep.pk: open_handoffs.get(rep.user_id, 0) for rep in reps}
        self.taken = defaultdict(int)
        self.turn = {rep.pk: (rep.last_assigned_at or NEVER, 0) for rep in reps}
        self.counter = 0
        self.by_region: dict[str, list[Rep]] = defaultdict(list)
        # Managers escalate; they take leads only when a rule names them.
        for rep in reps:
            if not getattr(rep, "manages", False):
                self.by_region[as_text(rep.region)].append(rep)

    @classmethod
    def load(cls) -> "Router":
        """Read active rules, active reps and open handoff counts: 3 queries."""
        rules = list(RoutingRule.objects.filter(is_active=True).order_by("position"))
        reps = list(
            Rep.objects.filter(is_active=True)
            .select_related("user")
            .annotate(manages=Exists(Rep.objects.filter(manager=OuterRef("pk"))))
        )
        counts = dict(
            Handoff.objects.pending()
            .filter(assignee__isnull=False)
            .order_by()
            .values("assignee")
            .annotate(n=Count("pk"))
            .values_list("assignee", "n")
        )
        return cls(rules, reps, counts)

    def route(self, contact: Contact) -> RoutingDecision:
        """Walk the rules by position and return the first that finds a rep."""
        notes = []
        for rule in self.rules:
            if not rule_matches(rule, contact):
                continue
            rep, skipped = self._pick(rule)
            if skipped:
                notes.append("skipped " + ", ".join(skipped))
            if rep is None:
                notes.append(f"rule {rule.name!r} matched but no rep is free")
                continue
            notes.insert(0, f"rule {rule.name!r} chose {rep} ({self._load_text(rep)})")
            return RoutingDecision(rule, rep, rep.user, "; ".join(notes)[:255])
        notes.append("no routing rule found a rep")
        return RoutingDecision(None, None, None, "; ".join(notes)[:255])

    def take(self, rep: Rep, *, now: dt.datetime) -> None:
        """Count one more lead for a rep and send them to the back of the queue."""
        self.taken[rep.pk] += 1
        self.counter += 1
        self.turn[rep.pk] = (now, self.counter)

    def reserve(self, rep: Rep, *, now: dt.datetime) -> None:
        """Count a handoff the caller is about to give this rep."""
        self.open[rep.pk] += 1
        self.take(rep, now=now)

    def _pick(self, rule: RoutingRule) -> tuple[Rep | None, list[str]]:
        skipped = []
        fixed = self.reps.get(rule.rep_id) if rule.rep_id else None
        if fixed is not None:
            if not self._at_capacity(fixed):
                return fixed, skipped
            skipped.append(f"{fixed} (at capacity)")

        candidates = []
        for rep in self.by_region.get(as_text(rule.region), []):
            if self._at_capacity(rep):
                skipped.append(f"{rep} (at capacity)")
            else:
                candidates.append(rep)
        if not candidates:
            return None, skipped
        return min(candidates, key=self._order), skipped

    def _at_capacity(self, rep: Rep) -> bool:
        return self.open[rep.pk] >= rep.capacity

    def _order(self, rep: Rep):
        load = (self.open[rep.pk] + self.taken[rep.pk]) / rep.capacity
        return (load, self.turn[rep.pk], rep.pk)

    def _load_text(self, rep: Rep) -> str:
        return f"{self.open[rep.pk]}/{rep.capacity} open handoffs"


def rule_matches(rule: RoutingRule, contact: Contact) -> bool:
    """Say whether a contact meets a rule: blank field matches everyone."""
    if not rule.field:
        return True
    value = as_text(contact_field_value(contact, rule.field))
    wanted = {as_text(v) for v in rule.values.split(",")} - {""}
    return value in wanted
