"""Choose the rep who should own a contact, by routing rules and rep load.

Rules are tried by position and the first that finds an available rep
wins. A rule matches a contact by a field (territory, product), a named
account, a segment, or always; it then assigns to one rep, the least-loaded
rep of a region, or a team by round robin, weighted round robin or least
load.

A rep is unavailable while inactive, out of office on today's date in their
own time zone, or carrying as many open handoffs as their capacity; they are
skipped and the skip is named in the decision's reason. Working hours do not
make a rep unavailable: a lead routed at night queues for the rep's next
working moment, and the SLA clock counts only business hours.

``route_contact`` only reads, so the admin can show a dry run.
``choose_assignee`` is what a real handoff calls: it picks under a lock on the
team and records the assignment in the same transaction, so round robin
stays fair when several workers route at once.
"""

import datetime as dt
import logging
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Count, Exists, F, OuterRef

from crm.models import Account, Contact, Rep
from nurture.models import Handoff, RoutingRule, Team, TeamMembership

from .fields import HIDDEN_FIELDS, as_text, contact_field_value
from .segments import SegmentError, contact_in_segment, segment_contact_ids

logger = logging.getLogger(__name__)

# Sorts before any real assignment time: a rep never assigned goes first.
NEVER = dt.datetime.min.replace(tzinfo=dt.UTC)

Match = RoutingRule.Match
Strategy = RoutingRule.Strategy
TEAM_STRATEGIES = {Strategy.ROUND_ROBIN, Strategy.WEIGHTED, Strategy.LEAST_LOADED}


@dataclass(frozen=True)
class RuleOutcome:
    """What one rule did for one contact, for the dry-run page."""

    rule: RoutingRule
    matched: bool
    note: str


@dataclass(frozen=True)
class RoutingDecision:
    """Which rule matched, which rep was chosen and why."""

    rule: RoutingRule | None
    rep: Rep | None
    user: object | None
    reason: str
    team: Team | None = None
    trace: tuple[RuleOutcome, ...] = field(default=())


def route_contact(
    contact: Contact, *, now: dt.datetime, exclude_user_ids: Iterable[int] = ()
) -> RoutingDecision:
    """Decide which rep should own a contact; change nothing.

    ``exclude_user_ids`` passes reps over, e.g. the assignee a breached
    handoff is being taken from. A real handoff calls ``choose_assignee``.
    """
    router = Router.load(now=now)
    return router.route(contact, exclude_user_ids=exclude_user_ids)


def choose_assignee(
    contact: Contact, *, now: dt.datetime, exclude_user_ids: Iterable[int] = ()
) -> RoutingDecision:
    """Route a contact for a real handoff and record the assignment.

    Team rules pick their member under a row lock on the team and bump the
    team's counters before the lock is released, so two workers never pick
    from the same counts. Call it inside the transaction that creates the
    handoff: the lock is held, and the counters roll back, with it.
    """
    with transaction.atomic():
        router = Router.load(now=now, lock_teams=True)
        decision = router.route(contact, exclude_user_ids=exclude_user_ids)
        if decision.rep is not None:
            record_assignment(decision.rep, now=now, team=decision.team)
    return decision


def record_assignment(rep: Rep, *, now: dt.datetime, team: Team | None = None):
    """Remember that a rep just got a lead, so round robin passes them by."""
    Rep.objects.filter(pk=rep.pk).update(last_assigned_at=now)
    rep.last_assigned_at = now
    if team is not None:
        Team.objects.filter(pk=team.pk).update(assignments=F("assignments") + 1)
        TeamMembership.objects.filter(team=team, rep=rep).update(
            assigned=F("assigned") + 1
        )


def assign_owners(contacts: Iterable[Contact], *, now: dt.datetime) -> int:
    """Give every ownerless contact a rep by the routing rules, in bulk.

    Rules, reps, team members, open handoffs and segment membership are read
    once for the whole batch; the batch is then balanced in memory, so the
    query count depends on the number of rules and of reps that receive
    contacts, not on the number of contacts. Return how many got an owner.
    """
    ids = [c.pk for c in contacts if c.owner_id is None]
    if not ids:
        return 0
    ownerless = list(
        Contact.objects.filter(pk__in=ids, owner__isnull=True)
        .select_related("account")
        .order_by("pk")
    )
    router = Router.load(now=now)
    router.prefetch_segments([c.pk for c in ownerless])

    by_user: dict[int, list[int]] = defaultdict(list)
    reps: dict[int, Rep] = {}
    by_member: dict[tuple[int, int], int] = defaultdict(int)
    for contact in ownerless:
        decision = router.route(contact)
        if decision.rep is None:
            logger.warning(
                "No rep for contact: %s",
                decision.reason,
                extra={"contact_id": contact.pk},
            )
            continue
        router.take(decision.rep, now=now, team=decision.team)
        by_user[decision.rep.user_id].append(contact.pk)
        reps[decision.rep.pk] = decision.rep
        if decision.team is not None:
            by_member[(decision.team.pk, decision.rep.pk)] += 1

    # The owner__isnull guard keeps an owner set meanwhile by someone else.
    assigned = 0
    with transaction.atomic():
        for user_id, contact_ids in by_user.items():
            assigned += Contact.objects.filter(
                pk__in=contact_ids, owner__isnull=True
            ).update(owner_id=user_id, updated_at=now)
        if reps:
            Rep.objects.filter(pk__in=list(reps)).update(last_assigned_at=now)
        _count_team_assignments(by_member)
    logger.info("Assigned owners to %d contacts", assigned)
    return assigned


def _count_team_assignments(by_member: dict[tuple[int, int], int]) -> None:
    per_team: dict[int, int] = defaultdict(int)
    for (team_id, rep_id), n in by_member.items():
        TeamMembership.objects.filter(team_id=team_id, rep_id=rep_id).update(
            assigned=F("assigned") + n
        )
        per_team[team_id] += n
    for team_id, n in per_team.items():
        Team.objects.filter(pk=team_id).update(assignments=F("assignments") + n)


def out_of_office_note(rep: Rep, *, now: dt.datetime) -> str:
    """Say how long a rep is out of office today, or "" when they are in.

    Today is the date in the rep's own time zone; an absence without an end
    date lasts until someone clears it.
    """
    start, end = rep.out_of_office_from, rep.out_of_office_until
    if start is None and end is None:
        return ""
    today = now.astimezone(_zone(rep.time_zone)).date()
    if start is not None and today < start:
        return ""
    if end is not None and today > end:
        return ""
    return f"out of office until {end:%Y-%m-%d}" if end else "out of office"


def _zone(name: str) -> dt.tzinfo:
    try:
        return ZoneInfo(name or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        return dt.UTC


@dataclass
class _Pick:
    rep: Rep | None = None
    team: Team | None = None
    skipped: list[tuple[Rep, str]] = field(default_factory=list)
    missing: str = "no rep is free"


class Router:
    """Rules and rep load held in memory so a batch routes without queries.

    Load is open handoffs per unit of capacity. Reps who manage others are
    left out of the region pools, and inactive reps have left them; both
    take leads when a rule or team names them. Contacts routed by this
    router count towards the order (so a batch spreads out) but not towards
    capacity, which limits open handoffs only.
    """

    def __init__(
        self,
        rules: list[RoutingRule],
        reps: list[Rep],
        open_handoffs: dict[int, int],
        memberships: list[TeamMembership] = (),
        *,
        now: dt.datetime,
        lock_teams: bool = False,
    ):
        self.now = now
        self.rules = rules
        self.reps = {rep.pk: rep for rep in reps}
        self.rep_of_user = {rep.user_id: rep for rep in reps}
        self.open = {rep.pk: open_handoffs.get(rep.user_id, 0) for rep in reps}
        self.taken = defaultdict(int)
        self.turn = {rep.pk: (rep.last_assigned_at or NEVER, 0) for rep in reps}
        self.counter = 0
        self.by_region: dict[str, list[Rep]] = defaultdict(list)
        # Managers escalate; they take leads only when a rule names them.
        for rep in reps:
            if rep.is_active and not getattr(rep, "manages", False):
                self.by_region[as_text(rep.region)].append(rep)
        self.members: dict[int, list[TeamMembership]] = defaultdict(list)
        for membership in memberships:
            self.members[membership.team_id].append(membership)
        self.team_taken: dict[tuple[int, int], int] = defaultdict(int)
        self.segment_ids: dict[int, set[int]] | None = None
        self.lock_teams = lock_teams
        self.locked: set[int] = set()

    @classmethod
    def load(cls, *, now: dt.datetime, lock_teams: bool = False) -> "Router":
        """Read rules, reps, team members and open handoff counts: 4 queries."""
        rules = list(
            RoutingRule.objects.filter(is_active=True)
            .select_related("segment", "team")
            .order_by("position")
        )
        reps = list(
            Rep.objects.select_related("user").annotate(
                manages=Exists(Rep.objects.filter(manager=OuterRef("pk")))
            )
        )
        team_ids = {r.team_id for r in rules if r.team_id}
        memberships = _memberships(team_ids) if team_ids else []
        counts = dict(
            Handoff.objects.pending()
            .filter(assignee__isnull=False)
            .order_by()
            .values("assignee")
            .annotate(n=Count("pk"))
            .values_list("assignee", "n")
        )
        return cls(rules, reps, counts, memberships, now=now, lock_teams=lock_teams)

    def prefetch_segments(self, contact_ids: list[int]) -> None:
        """Read which of a batch's contacts each segment rule holds: a query each."""
        self.segment_ids = {}
        for rule in self.rules:
            if rule.match != Match.SEGMENT or rule.segment_id is None:
                continue
            if rule.segment_id in self.segment_ids:
                continue
            try:
                found = segment_contact_ids(rule.segment, contact_ids)
            except SegmentError as error:
                logger.warning(
                    "Segment %s cannot be used: %s", rule.segment_id, error.message
                )
                found = set()
            self.segment_ids[rule.segment_id] = found

    def route(
        self, contact: Contact, *, exclude_user_ids: Iterable[int] = ()
    ) -> RoutingDecision:
        """Walk the rules by position and return the first that finds a rep."""
        excluded = set(exclude_user_ids)
        skipped: dict[int, str] = {}
        notes: list[str] = []
        trace: list[RuleOutcome] = []
        for rule in self.rules:
            matched, why = self._matches(rule, contact)
            if not matched:
                trace.append(RuleOutcome(rule, False, why))
                continue
            pick = self._pick(rule, contact, excluded)
            for rep, reason in pick.skipped:
                skipped.setdefault(rep.pk, f"{rep} ({reason})")
            if pick.rep is None:
                notes.append(f"rule {rule.name!r} matched but {pick.missing}")
                trace.append(RuleOutcome(rule, True, pick.missing))
                continue

            chose = f"rule {rule.name!r} chose {pick.rep} ({self._load_text(pick.rep)})"
            trace.append(RuleOutcome(rule, True, f"chose {pick.rep}"))
            reason = "; ".join([chose, *_skip_text(skipped), *notes])
            return RoutingDecision(
                rule, pick.rep, pick.rep.user, reason, pick.team, tuple(trace)
            )

        notes.append("no routing rule found a rep")
        reason = "; ".join([*_skip_text(skipped), *notes])
        return RoutingDecision(None, None, None, reason, None, tuple(trace))

    def take(self, rep: Rep, *, now: dt.datetime, team: Team | None = None) -> None:
        """Count one more lead for a rep and send them to the back of the queue."""
        self.taken[rep.pk] += 1
        self.counter += 1
        self.turn[rep.pk] = (now, self.counter)
        if team is not None:
            self.team_taken[(team.pk, rep.pk)] += 1

    def reserve(self, rep: Rep, *, now: dt.datetime, team: Team | None = None):
        """Count a handoff the caller is about to give this rep."""
        self.open[rep.pk] += 1
        self.take(rep, now=now, team=team)

    # Matching ---------------------------------------------------------------

    def _matches(self, rule: RoutingRule, contact: Contact) -> tuple[bool, str]:
        if rule.match == Match.ALWAYS:
            return True, ""
        if rule.match == Match.NAMED_ACCOUNT:
            account = contact.account if contact.account_id else None
            if account is None or account.tier != Account.Tier.TIER_1:
                return False, "not a named account"
            if account.owner_id is None:
                return False, "named account has no owner"
            return True, ""
        if rule.match == Match.SEGMENT:
            return self._in_segment(rule, contact)
        if rule_matches(rule, contact):
            return True, ""
        return False, f"{rule.field} is not one of the values"

    def _in_segment(self, rule: RoutingRule, contact: Contact) -> tuple[bool, str]:
        if rule.segment_id is None:
            return False, "no segment chosen"
        if self.segment_ids is not None and rule.segment_id in self.segment_ids:
            found = contact.pk in self.segment_ids[rule.segment_id]
        else:
            try:
                found = contact_in_segment(contact, rule.segment)
            except SegmentError as error:
                return False, f"segment {rule.segment} is invalid: {error.message}"
        return (True, "") if found else (False, f"not in segment {rule.segment}")

    # Choosing a rep -----------------------------------------------------------

    def _pick(self, rule: RoutingRule, contact: Contact, excluded: set[int]) -> _Pick:
        if rule.match == Match.NAMED_ACCOUNT:
            owner = self.rep_of_user.get(contact.account.owner_id)
            if owner is None:
                return _Pick(missing="the account owner is not a rep")
            return self._first_available([owner], excluded)
        if rule.strategy == Strategy.SINGLE:
            fixed = self.reps.get(rule.rep_id)
            if fixed is None:
                return _Pick(missing="the rule names no rep")
            return self._first_available([fixed], excluded)
        if rule.strategy in TEAM_STRATEGIES:
            return self._pick_from_team(rule, excluded)
        return self._pick_from_region(rule, excluded)

    def _pick_from_region(self, rule: RoutingRule, excluded: set[int]) -> _Pick:
        pick = _Pick()
        fixed = self.reps.get(rule.rep_id) if rule.rep_id else None
        if fixed is not None:
            pick = self._first_available([fixed], excluded)
            if pick.rep is not None:
                return pick
        pool = self.by_region.get(as_text(rule.region), [])
        available = self._available(pool, excluded, pick.skipped)
        if available:
            pick.rep = min(available, key=self._order)
        return pick

    def _pick_from_team(self, rule: RoutingRule, excluded: set[int]) -> _Pick:
        if rule.team_id is None:
            return _Pick(missing="the rule names no team")
        if self.lock_teams and rule.team_id not in self.locked:
            self._lock_team(rule.team_id)
        members = self.members.get(rule.team_id, [])
        pick = _Pick(team=rule.team, missing=f"no member of {rule.team} is free")
        by_rep = {m.rep_id: m for m in members if m.rep_id in self.reps}
        pool = [self.reps[rep_id] for rep_id in by_rep]
        available = self._available(pool, excluded, pick.skipped)
        if not available:
            return pick

        if rule.strategy == Strategy.LEAST_LOADED:
            pick.rep = min(available, key=self._order)
            return pick
        weighted = rule.strategy == Strategy.WEIGHTED
        pick.rep = self._next_in_turn(
            rule.team_id, [by_rep[rep.pk] for rep in available], members, weighted
        )
        return pick

    def _next_in_turn(self, team_id, candidates, members, weighted: bool) -> Rep:
        """Pick the candidate furthest below their share of the team's leads.

        A member's share is their weight over the team's total weight (all
        weights count as 1 for plain round robin). Choosing the largest
        shortfall after the next lead keeps every member within one lead of
        their share, and for equal weights is plain rotation.
        """

        def weight(membership):
            return membership.weight if weighted else 1

        def given(membership):
            return membership.assigned + self.team_taken[(team_id, membership.rep_id)]

        total = sum(given(m) for m in members)
        total_weight = sum(weight(m) for m in members) or 1
        eligible = [m for m in candidates if weight(m) > 0] or candidates
        best = min(
            eligible,
            key=lambda m: (
                given(m) - (total + 1) * weight(m) / total_weight,
                -weight(m),
                m.pk,
            ),
        )
        return self.reps[best.rep_id]

    def _lock_team(self, team_id: int) -> None:
        """Lock a team's row, then re-read its counters as they now stand."""
        list(Team.objects.select_for_update().filter(pk=team_id).values_list("pk"))
        self.members[team_id] = _memberships({team_id})
        self.locked.add(team_id)

    def _first_available(self, reps: list[Rep], excluded: set[int]) -> _Pick:
        pick = _Pick()
        available = self._available(reps, excluded, pick.skipped)
        if available:
            pick.rep = available[0]
        return pick

    def _available(self, reps, excluded: set[int], skipped: list) -> list[Rep]:
        available = []
        for rep in reps:
            reason = self._unavailable_because(rep, excluded)
            if reason:
                skipped.append((rep, reason))
            else:
                available.append(rep)
        return available

    def _unavailable_because(self, rep: Rep, excluded: set[int]) -> str:
        if rep.user_id in excluded:
            return "excluded"
        if not rep.is_active:
            return "inactive"
        away = out_of_office_note(rep, now=self.now)
        if away:
            return away
        if self.open[rep.pk] >= rep.capacity:
            return f"at capacity {self.open[rep.pk]}/{rep.capacity}"
        return ""

    def _order(self, rep: Rep):
        load = (self.open[rep.pk] + self.taken[rep.pk]) / max(rep.capacity, 1)
        return (load, self.turn[rep.pk], rep.pk)

    def _load_text(self, rep: Rep) -> str:
        return f"{self.open[rep.pk]}/{rep.capacity} open handoffs"


def _memberships(team_ids: set[int]) -> list[TeamMembership]:
    return list(
        TeamMembership.objects.filter(team_id__in=team_ids, is_active=True).order_by(
            "pk"
        )
    )


def _skip_text(skipped: dict[int, str]) -> list[str]:
    return ["skipped " + ", ".join(skipped.values())] if skipped else []


# Validation helpers for the routing rule form ------------------------------


def validate_rule_field(name: str) -> None:
    """Refuse a rule field that reads nothing, or reads what it must not.

    A rule may test a concrete contact field, ``attributes.<key>`` or
    ``account__<concrete account field>``; never a relation (nothing is read
    through the owner or any user), nor the held-out outcome. Raise
    ValidationError saying what may be used; a blank field is valid.
    """
    if not name:
        return
    if name.startswith("attributes."):
        if not name.removeprefix("attributes.").strip():
            raise ValidationError("Name the attribute: attributes.<key>.")
        return
    model, plain = Contact, name
    if name.startswith("account__"):
        model, plain = Account, name.removeprefix("account__")
    if plain not in rule_fields(model):
        raise ValidationError(
            f"{name!r} is not a field a rule can test. Use a contact field "
            "(e.g. country), attributes.<key> or account__<field> "
            "(e.g. account__industry)."
        )


def rule_fields(model) -> set[str]:
    """Return the names of a model's plain fields a routing rule may read."""
    return {
        field.name
        for field in model._meta.concrete_fields
        if not field.is_relation and field.name not in HIDDEN_FIELDS
    }


def validate_rule_region(region: str) -> None:
    """Refuse a region no active rep is in: the rule could never assign.

    Regions compare as rules compare them, trimmed and case-folded.
    """
    wanted = as_text(region)
    regions = Rep.objects.filter(is_active=True).values_list("region", flat=True)
    if not any(as_text(value) == wanted for value in regions.distinct()):
        raise ValidationError(f"No active rep is in the region {region!r}.")


def rule_matches(rule: RoutingRule, contact: Contact) -> bool:
    """Say whether a contact meets a field rule: blank field matches everyone."""
    if not rule.field:
        return True
    value = as_text(contact_field_value(contact, rule.field))
    wanted = {as_text(v) for v in rule.values.split(",")} - {""}
    return value in wanted
