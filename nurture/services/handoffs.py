"""Hand qualified leads to reps, keep their SLAs and record their decisions.

A handoff carries a snapshot of what the rep needs, a deadline counted in
the rep's business hours by the first matching SLA policy, and a follow-up
task. Each state change queues its webhook deliveries and emails in the
same transaction. The SLA sweep flags breaches and then runs the policy's
escalation chain, each step exactly once per handoff (see
``enforce_handoff_slas``).
"""

import datetime as dt
import logging
import math
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.mail import send_mail, send_mass_mail
from django.db import IntegrityError, transaction
from django.db.models import Count, Q
from django.urls import NoReverseMatch, reverse

from crm.models import Contact, LifecycleStage, Rep, can_see_all
from crm.services import change_stage
from nurture import conf
from nurture.models import (
    Cadence,
    Enrollment,
    Handoff,
    HandoffEscalation,
    SlaPolicy,
    Task,
)

from .business_hours import add_business_hours, calendar_for
from .enrollment import exit_enrollments
from .errors import NurtureError
from .handoff_context import (
    CONTEXT_ACCOUNT_HANDOFFS,
    build_contexts,
    handoff_entry,
)
from .routing import Router, _count_team_assignments, choose_assignee
from .segments import segment_contact_ids
from .webhooks import enqueue_webhook, enqueue_webhooks

logger = logging.getLogger(__name__)

# The longest deadline or escalation wait a policy may set: about a year of
# working days. Business-hours arithmetic gives up looking further ahead.
MAX_BUSINESS_HOURS = 2000


class RejectReason:
    NOT_NOW = "not_now"
    BAD_FIT = "bad_fit"
    CHOICES = [(NOT_NOW, "Not now (recycle)"), (BAD_FIT, "Bad fit (disqualify)")]


def accept_handoff(handoff: Handoff, *, now: dt.datetime, actor=None) -> Handoff:
    """Accept a handoff: the contact becomes sales qualified."""
    with transaction.atomic():
        locked = _lock_open(handoff)
        locked.status = Handoff.Status.ACCEPTED
        locked.accepted_at = now
        locked.first_touch_at = locked.first_touch_at or now
        locked.save(update_fields=["status", "accepted_at", "first_touch_at"])
        _close_handoff_tasks(locked, now=now)
        contact = locked.contact
        if contact.lifecycle_stage != LifecycleStage.SQL:
            change_stage(
                contact,
                LifecycleStage.SQL,
                now=now,
                actor=actor,
                reason="handoff accepted",
            )
        enqueue_webhook("handoff.accepted", webhook_payload(locked), now=now)
    logger.info("Handoff accepted", extra={"handoff_id": locked.pk})
    return locked


def reject_handoff(
    handoff: Handoff,
    *,
    reason: str,
    now: dt.datetime,
    note: str = "",
    actor=None,
) -> Handoff:
    """Reject a handoff: recycle the lead ("not now") or disqualify it."""
    stages = {
        RejectReason.NOT_NOW: LifecycleStage.RECYCLED,
        RejectReason.BAD_FIT: LifecycleStage.DISQUALIFIED,
    }
    if reason not in stages:
        raise NurtureError(f"reason must be one of {', '.join(stages)}", field="reason")

    with transaction.atomic():
        locked = _lock_open(handoff)
        locked.status = Handoff.Status.REJECTED
        locked.rejected_at = now
        locked.first_touch_at = locked.first_touch_at or now
        locked.rejection_reason = f"{reason}: {note}".strip(": ")[:255]
        locked.save(
            update_fields=[
                "status",
                "rejected_at",
                "first_touch_at",
                "rejection_reason",
            ]
        )
        _close_handoff_tasks(locked, now=now)
        change_stage(
            locked.contact,
            stages[reason],
            now=now,
            actor=actor,
            reason=f"handoff rejected ({reason})",
        )
        if reason == RejectReason.NOT_NOW:
            from .lifecycle import recycle_contact

            recycle_contact(locked.contact, now=now, actor=actor)
        enqueue_webhook(
            "handoff.rejected", webhook_payload(locked, reason=reason), now=now
        )
    logger.info("Handoff rejected", extra={"handoff_id": locked.pk})
    return locked


def record_first_touch(handoff: Handoff, *, now: dt.datetime) -> bool:
    """Note the rep's first action on a handoff; later calls change nothing.

    Accepting or rejecting records it too. Return whether this call did.
    """
    touched = Handoff.objects.filter(pk=handoff.pk, first_touch_at__isnull=True).update(
        first_touch_at=now
    )
    if touched:
        handoff.first_touch_at = now
    return bool(touched)


def _close_handoff_tasks(
    handoff: Handoff, *, now: dt.datetime, status: str = Task.Status.DONE
) -> None:
    """Close the follow-up and escalation tasks a decided handoff leaves."""
    handoff.tasks.filter(status=Task.Status.OPEN).update(
        status=status, completed_at=now
    )


def _lock_open(handoff: Handoff) -> Handoff:
    locked = (
        Handoff.objects.select_for_update()
        .select_related("contact")
        .filter(pk=handoff.pk, status__in=Handoff.OPEN_STATUSES)
        .first()
    )
    if locked is None:
        raise NurtureError("the handoff has already been decided", field="status")
    return locked


def sla_policy_for(contact: Contact) -> SlaPolicy | None:
    """Return the first active SLA policy, by position, that fits the contact.

    A policy fits when the contact's total score reaches its ``min_score``
    and, if it names a segment, the contact is in that segment.
    """
    return sla_policies_for([contact])[contact.pk]


def sla_policies_for(contacts: list[Contact]) -> dict[int, SlaPolicy | None]:
    """Return each contact's SLA policy, as ``sla_policy_for``, by contact id.

    One query for the policies and one per segment a policy names.
    """
    policies = list(
        SlaPolicy.objects.filter(is_active=True)
        .select_related("segment")
        .order_by("position")
    )
    ids = [contact.pk for contact in contacts]
    members: dict[int, set[int]] = {}
    for policy in policies:
        if policy.segment_id and policy.segment_id not in members:
            members[policy.segment_id] = segment_contact_ids(policy.segment, ids)

    chosen: dict[int, SlaPolicy | None] = {}
    for contact in contacts:
        chosen[contact.pk] = None
        for policy in policies:
            if policy.min_score is not None and contact.total_score < policy.min_score:
                continue
            if policy.segment_id and contact.pk not in members[policy.segment_id]:
                continue
            chosen[contact.pk] = policy
            break
    return chosen


def validate_response_hours(value) -> None:
    """Refuse a response time that is not a positive number of business hours.

    Raise ValidationError unless ``value`` is a finite number above zero and
    at most MAX_BUSINESS_HOURS.
    """
    if not _is_number(value) or value <= 0:
        raise ValidationError("Give a positive number of business hours.")
    if value > MAX_BUSINESS_HOURS:
        raise ValidationError(
            f"Give at most {MAX_BUSINESS_HOURS} business hours (about a year)."
        )


def response_hours(policy: SlaPolicy | None) -> float:
    """Return the business hours a policy (or the default) gives to respond.

    A policy whose stored value is unusable (written around the admin's
    validation) falls back to NURTURE_HANDOFF_SLA_HOURS, so one bad row
    cannot stop every handoff.
    """
    default = float(conf.get("NURTURE_HANDOFF_SLA_HOURS"))
    if policy is None:
        return default
    hours = policy.response_business_hours
    try:
        validate_response_hours(hours)
    except ValidationError:
        logger.warning(
            "SLA policy %s has an unusable response time; using %s hours",
            policy.pk,
            default,
            extra={"sla_policy_id": policy.pk},
        )
        return default
    return float(hours)


def _is_number(value) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
    )


def hand_off(contact: Contact, *, now: dt.datetime, actor=None) -> Handoff | None:
    """Pass a contact to the rep routing picks, with context and an SLA.

    The deadline is counted in the chosen rep's business hours. Return the
    contact's open handoff when there already is one, and None when no
    routing rule finds a free rep.
    """
    return hand_off_many([contact], now=now, actor=actor)[0]


def hand_off_many(
    contacts: Iterable[Contact], *, now: dt.datetime, actor=None
) -> list[Handoff | None]:
    """Hand off many contacts at once, each as ``hand_off`` would.

    Return one entry per contact, in order: its new handoff, the open one it
    already had, or None when no routing rule found a free rep. The batch
    costs a fixed number of queries, however many contacts it holds: routing
    runs in memory under the teams' row locks with the counters bumped once
    per rep, the context comes from history read for the whole batch, and
    handoffs, tasks and webhook rows are inserted in bulk. The assignees'
    emails go out together once the transaction commits. When another
    worker hands one of them off meanwhile, the batch is undone and redone
    one contact at a time.
    """
    contacts = list(contacts)
    if not contacts:
        return []
    ids = [contact.pk for contact in contacts]
    existing: dict[int, Handoff] = {}
    for handoff in Handoff.objects.pending().filter(contact_id__in=ids):
        existing.setdefault(handoff.contact_id, handoff)
    fresh = list({c.pk: c for c in contacts if c.pk not in existing}.values())

    try:
        with transaction.atomic():
            created, waiting = _hand_off_fresh(fresh, now=now)
    except IntegrityError:
        if len(fresh) == 1:
            # Someone handed the contact off meanwhile: theirs is the open one.
            contact_id = fresh[0].pk
            return [Handoff.objects.pending().filter(contact_id=contact_id).first()]
        # Someone handed one of them off meanwhile: go one by one, so each
        # contact gets theirs or the one already open.
        handed = {c.pk: hand_off(c, now=now, actor=actor) for c in fresh}
        return [existing.get(pk) or handed.get(pk) for pk in ids]

    for contact, reason in waiting:
        # Not an error: the lead waits, and hand_off_waiting_leads retries it
        # when a rep has room. Callers report waiting leads in aggregate.
        logger.info(
            "No rep to hand off to: %s", reason, extra={"contact_id": contact.pk}
        )
    for handoff, _ in created:
        logger.info(
            "Contact handed off",
            extra={"handoff_id": handoff.pk, "contact_id": handoff.contact_id},
        )
    by_contact = {handoff.contact_id: handoff for handoff, _ in created}
    return [existing.get(pk) or by_contact.get(pk) for pk in ids]


def _hand_off_fresh(contacts: list[Contact], *, now: dt.datetime):
    """Route, create and announce the handoffs of contacts without one.

    Return the (handoff, rep) pairs created and the (contact, reason) pairs
    no rep was free for. Raise IntegrityError when a contact got an open
    handoff meanwhile; the caller's transaction rolls everything back.
    """
    if not contacts:
        return [], []
    policies = sla_policies_for(contacts)
    router = Router.load(now=now, lock_teams=True)
    router.prefetch_segments([contact.pk for contact in contacts])
    routed = []
    waiting = []
    for contact in contacts:
        decision = router.route(contact)
        if decision.rep is None:
            waiting.append((contact, decision.reason))
            continue
        router.reserve(decision.rep, now=now, team=decision.team)
        # reserve() counts the lead both as open and as routed; one by one,
        # it would only be open, so load counts it once, as here.
        router.taken[decision.rep.pk] -= 1
        routed.append((contact, decision))
    if not routed:
        return [], waiting
    _record_assignments([decision for _, decision in routed], now=now)

    contexts = build_contexts([contact for contact, _ in routed], now=now)
    # Deadlines differ only by rep calendar and response time.
    deadlines: dict[tuple[int, float], dt.datetime] = {}
    handoffs = []
    for contact, decision in routed:
        policy = policies[contact.pk]
        key = (decision.rep.pk, response_hours(policy))
        if key not in deadlines:
            deadlines[key] = add_business_hours(calendar_for(decision.rep), now, key[1])
        handoffs.append(
            Handoff(
                contact=contact,
                assignee=decision.user,
                routing_rule=decision.rule,
                routing_reason=decision.reason,
                sla_policy=policy,
                context=contexts[contact.pk],
                created_at=now,
                sla_due_at=deadlines[key],
            )
        )
    Handoff.objects.bulk_create(handoffs)
    _add_batch_colleagues(handoffs)

    _take_over_many(handoffs, now=now)
    enqueue_webhooks("handoff.created", [webhook_payload(h) for h in handoffs], now=now)
    reps = [decision.rep for _, decision in routed]
    _notify_many(
        [
            _assignee_message(handoff, rep, headline="New lead for you")
            for handoff, rep in zip(handoffs, reps, strict=True)
        ]
    )
    return list(zip(handoffs, reps, strict=True)), waiting


def _record_assignments(decisions, *, now: dt.datetime) -> None:
    """Stamp the chosen reps and bump their teams' counters, once per rep."""
    by_member: dict[tuple[int, int], int] = defaultdict(int)
    rep_ids = set()
    for decision in decisions:
        rep_ids.add(decision.rep.pk)
        decision.rep.last_assigned_at = now
        if decision.team is not None:
            by_member[(decision.team.pk, decision.rep.pk)] += 1
    Rep.objects.filter(pk__in=rep_ids).update(last_assigned_at=now)
    _count_team_assignments(by_member)


def _add_batch_colleagues(handoffs: list[Handoff]) -> None:
    """Add the account's handoffs made earlier in the batch to each context.

    One by one, a contact's snapshot would list the handoffs just made for
    colleagues at the same account; the batch adds them after the insert,
    when they have ids, and rewrites those contexts in one query.
    """
    by_account: dict[int, list[Handoff]] = defaultdict(list)
    changed = []
    for handoff in handoffs:
        contact = handoff.contact
        if not contact.account_id:
            continue
        earlier = by_account[contact.account_id]
        if earlier:
            entries = handoff.context["account_open_handoffs"]
            entries += [handoff_entry(other) for other in earlier]
            del entries[CONTEXT_ACCOUNT_HANDOFFS:]
            changed.append(handoff)
        earlier.append(handoff)
    if changed:
        Handoff.objects.bulk_update(changed, ["context"])


def hand_off_waiting_leads(*, now: dt.datetime, limit: int = 500) -> int:
    """Hand off MQLs that found no free rep earlier, oldest first.

    Routing skips reps at capacity, so when every rep a lead can go to is
    full, the new MQL waits without a handoff. This sweep retries waiting
    leads as reps decide handoffs and capacity frees up. It routes them in
    memory first and only hands off those a rep has room for, so a full team
    costs a few queries and no failed attempts. Return how many were handed
    off.
    """
    if free_handoff_capacity() <= 0:
        return 0
    waiting = list(
        Contact.objects.filter(lifecycle_stage=LifecycleStage.MQL)
        .exclude(pk__in=Handoff.objects.pending().values("contact_id"))
        .select_related("account")
        .order_by("mql_at", "pk")[:limit]
    )
    router = Router.load(now=now)
    routable = []
    for contact in waiting:
        decision = router.route(contact)
        if decision.rep is not None:
            router.reserve(decision.rep, now=now, team=decision.team)
            routable.append(contact)

    handed = sum(handoff is not None for handoff in hand_off_many(routable, now=now))
    if handed or len(waiting) > handed:
        logger.info(
            "Handed off %d waiting MQLs; %d still wait for a rep",
            handed,
            len(waiting) - handed,
        )
    return handed


def free_handoff_capacity() -> int:
    """Count the open-handoff places left across active reps who take leads."""
    reps = (
        Rep.objects.filter(is_active=True, reports__isnull=True)
        .annotate(
            open_handoffs=Count(
                "user__handoffs",
                filter=Q(user__handoffs__status__in=Handoff.OPEN_STATUSES),
            )
        )
        .values_list("capacity", "open_handoffs")
    )
    return sum(max(capacity - open_, 0) for capacity, open_ in reps)


def _take_over_many(handoffs: list[Handoff], *, now: dt.datetime) -> None:
    """Make each rep the owner, stop nurture and queue their follow-ups.

    Owners are set with one update per assignee; the cadences that exit on
    handoff end for all the contacts at once.
    """
    by_assignee: dict[int, list[int]] = defaultdict(list)
    for handoff in handoffs:
        handoff.contact.owner = handoff.assignee
        by_assignee[handoff.assignee_id].append(handoff.contact_id)
    for user_id, contact_ids in by_assignee.items():
        Contact.objects.filter(pk__in=contact_ids).update(
            owner_id=user_id, updated_at=now
        )
    exit_enrollments(
        [handoff.contact_id for handoff in handoffs],
        Enrollment.ExitReason.HANDOFF,
        now=now,
        cadence_ids=Cadence.objects.filter(exit_on_handoff=True).values_list(
            "pk", flat=True
        ),
    )
    Task.objects.bulk_create(_follow_up(handoff, now=now) for handoff in handoffs)


def _create_follow_up(handoff: Handoff, *, now: dt.datetime) -> Task:
    task = _follow_up(handoff, now=now)
    task.save()
    return task


def _follow_up(handoff: Handoff, *, now: dt.datetime) -> Task:
    """Return the unsaved task asking the assignee to decide the handoff."""
    return Task(
        contact=handoff.contact,
        assignee=handoff.assignee,
        handoff=handoff,
        type=Task.Type.FOLLOW_UP,
        title=f"Accept or reject the handoff of {handoff.contact}"[:255],
        instructions=handoff.routing_reason,
        due_at=handoff.sla_due_at,
        created_at=now,
    )


# SLA sweep -----------------------------------------------------------------


@dataclass
class SlaSweepResult:
    """What one SLA sweep did: breaches flagged and escalation steps run."""

    breached: int = 0
    steps: list[tuple[int, int, str]] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"breached": self.breached, "steps": len(self.steps)}


def validate_escalation_chain(value) -> None:
    """Refuse an escalation chain the sweep could not run, naming the step.

    A chain is a list of steps, each an object with an ``action`` the sweep
    knows and an optional ``after_business_hours``, a number from 0 to
    MAX_BUSINESS_HOURS. An action appears once: a breach runs each step once.
    Steps are numbered from 1 in the message.
    """
    if not isinstance(value, list):
        raise ValidationError(
            'Give a list of steps, e.g. [{"action": "remind", '
            '"after_business_hours": 0}].'
        )
    seen: set[str] = set()
    for number, step in enumerate(value, start=1):
        problem = _step_problem(step, seen)
        if problem:
            raise ValidationError(f"Step {number} {problem}.")
        seen.add(step["action"])


def _step_problem(step, seen: set[str]) -> str:
    if not isinstance(step, dict):
        return 'is not an object like {"action": "remind"}'
    unknown = sorted(set(step) - {"action", "after_business_hours"})
    if unknown:
        return f"has unknown keys: {', '.join(map(str, unknown))}"
    action = step.get("action")
    if action not in HandoffEscalation.Action.values:
        known = ", ".join(HandoffEscalation.Action.values)
        return f"has unknown action {action!r} (use one of {known})"
    if action in seen:
        return f"repeats the action {action!r}"
    hours = step.get("after_business_hours", 0)
    if not _is_number(hours):
        return "needs after_business_hours to be a number of hours"
    if hours < 0:
        return "needs after_business_hours to be 0 or more"
    if hours > MAX_BUSINESS_HOURS:
        return f"needs after_business_hours to be at most {MAX_BUSINESS_HOURS}"
    return ""


def escalation_chain(policy: SlaPolicy | None) -> list[dict]:
    """Return the steps a breach escalates through, in order.

    A policy whose stored chain is invalid (written around the admin's
    validation) escalates by NURTURE_DEFAULT_ESCALATION_CHAIN instead, with a
    warning, so one bad row cannot stop the sweep; an invalid default
    escalates nothing.
    """
    if policy is not None:
        chain = policy.escalation_chain if policy.escalation_chain is not None else []
        problem = _chain_problem(chain)
        if not problem:
            return chain
        logger.warning(
            "SLA policy %s has an invalid escalation chain (%s); "
            "escalating by the default chain",
            policy.pk,
            problem,
            extra={"sla_policy_id": policy.pk},
        )

    chain = conf.get("NURTURE_DEFAULT_ESCALATION_CHAIN")
    problem = _chain_problem(chain)
    if problem:
        logger.warning(
            "NURTURE_DEFAULT_ESCALATION_CHAIN is invalid (%s); escalating nothing",
            problem,
        )
        return []
    return chain


def _chain_problem(chain) -> str:
    try:
        validate_escalation_chain(chain)
    except ValidationError as error:
        return "; ".join(error.messages)
    return ""


def enforce_handoff_slas(*, now: dt.datetime) -> SlaSweepResult:
    """Flag handoffs past their deadline and run their due escalation steps.

    A pending handoff past ``sla_due_at`` is flipped to breached by a
    conditional update (only the sweep that flips it reports the breach),
    with ``breached_at`` set to the deadline itself so that steps fall due
    at the same moments however late the sweep runs. Each step of the
    chain falls due ``after_business_hours`` of the rep who breached after
    the breach. A sweep runs every due step in order, the reminder too when
    the reassignment is also due: each leaves its record and tells someone
    what happened. Each step inserts its HandoffEscalation row, unique per
    (handoff, level), under a lock on the handoff before acting, so two
    sweeps at once, or catching up after an outage, run it exactly once.

    One breach runs the chain once, as a round: every step of the round
    answers the rep who breached (the rows' ``from_user``), also the steps
    after a reassignment. When a round that reassigned the lead is over,
    the handoff is pending again under the new rep's fresh SLA, and a
    breach of that starts a new round from the top of the chain. Levels keep
    counting up across rounds, so each row stays unique.
    """
    result = SlaSweepResult()
    for handoff in Handoff.objects.breached(now).order_by("sla_due_at", "pk"):
        with transaction.atomic():
            flipped = Handoff.objects.filter(
                pk=handoff.pk, status=Handoff.Status.PENDING
            ).update(status=Handoff.Status.BREACHED, breached_at=handoff.sla_due_at)
            if flipped:
                handoff.status = Handoff.Status.BREACHED
                handoff.breached_at = handoff.sla_due_at
                enqueue_webhook("handoff.breached", webhook_payload(handoff), now=now)
                result.breached += 1

    # Each policy's chain is checked once per sweep, and warned about once.
    chains: dict[int | None, list[dict]] = {}
    open_breaches = Handoff.objects.filter(
        status=Handoff.Status.BREACHED
    ).select_related("sla_policy")
    for handoff in open_breaches.order_by("breached_at", "pk"):
        if handoff.sla_policy_id not in chains:
            chains[handoff.sla_policy_id] = escalation_chain(handoff.sla_policy)
        chain = chains[handoff.sla_policy_id]
        if chain:
            result.steps += _run_due_steps(handoff.pk, chain, now=now)

    if result.breached or result.steps:
        logger.info(
            "SLA sweep flagged %d breaches and ran %d escalation steps",
            result.breached,
            len(result.steps),
        )
    return result


@dataclass(frozen=True)
class _Round:
    """Whose breach the next escalation step answers and how many steps ran."""

    user_id: int | None
    done: int


def _current_round(handoff: Handoff, chain_length: int) -> _Round:
    """Work out the round a breached handoff is in from its escalation rows.

    A round's rows name the rep who breached as ``from_user`` and happen at
    or after the breach. The latest run of rows from one rep is the current
    round, unless it happened before this breach, or it is finished and the
    lead has since moved on: then this is a fresh round for the assignee.
    """
    latest = list(
        handoff.escalations.order_by("-level").values_list(
            "from_user_id", "happened_at"
        )[:chain_length]
    )
    if not latest or latest[0][1] < handoff.breached_at:
        return _Round(handoff.assignee_id, 0)
    user_id = latest[0][0]
    done = 0
    for from_user_id, _ in latest:
        if from_user_id != user_id:
            break
        done += 1
    if user_id != handoff.assignee_id and done >= chain_length:
        return _Round(handoff.assignee_id, 0)
    return _Round(user_id, done)


def _run_due_steps(
    handoff_id: int, chain: list[dict], *, now: dt.datetime
) -> list[tuple[int, int, str]]:
    done = []
    while True:
        with transaction.atomic():
            handoff = (
                Handoff.objects.select_for_update()
                .filter(pk=handoff_id, status=Handoff.Status.BREACHED)
                .first()
            )
            if handoff is None:
                return done
            round_ = _current_round(handoff, len(chain))
            if round_.done >= len(chain):
                return done
            step = chain[round_.done]
            # Steps wait in the business hours of the rep who breached.
            rep = _rep_of(round_.user_id)
            due_at = add_business_hours(
                calendar_for(rep),
                handoff.breached_at,
                float(step.get("after_business_hours", 0)),
            )
            if due_at > now:
                return done

            level = handoff.escalation_level + 1
            escalation, created = HandoffEscalation.objects.get_or_create(
                handoff=handoff,
                level=level,
                defaults={
                    "action": step["action"],
                    "happened_at": now,
                    "from_user_id": round_.user_id,
                },
            )
            if not created:
                return done
            ACTIONS[step["action"]](handoff, escalation, rep, now=now)

            handoff.escalation_level = level
            update_fields = ["escalation_level"]
            round_over = round_.done + 1 == len(chain)
            if round_over and handoff.assignee_id != round_.user_id:
                # The lead has a new rep: their own deadline counts from now on.
                handoff.status = Handoff.Status.PENDING
                update_fields.append("status")
            handoff.save(update_fields=update_fields)
        done.append((handoff_id, level, step["action"]))


def _moved_on(handoff: Handoff, escalation: HandoffEscalation) -> bool:
    """Say whether the lead left the rep who breached earlier in the round."""
    if handoff.assignee_id == escalation.from_user_id:
        return False
    escalation.note = f"the lead is already with {handoff.assignee}"[:255]
    escalation.save(update_fields=["note"])
    return True


def _remind(handoff: Handoff, escalation, rep, *, now: dt.datetime) -> None:
    """Remind the rep who breached: a task due now and an email."""
    if _moved_on(handoff, escalation):
        return
    contact = handoff.contact
    Task.objects.create(
        contact=contact,
        assignee=handoff.assignee,
        handoff=handoff,
        type=Task.Type.FOLLOW_UP,
        title=f"Overdue: accept or reject the handoff of {contact}"[:255],
        due_at=now,
        created_at=now,
    )
    escalation.to_user_id = handoff.assignee_id
    escalation.save(update_fields=["to_user"])
    if handoff.assignee is not None:
        _notify(
            handoff.assignee.email,
            f"Overdue: the handoff of {contact} waits for you",
            f"The response time for {contact} passed at "
            f"{handoff.breached_at:%Y-%m-%d %H:%M} UTC. Please accept or "
            f"reject it now:\n{handoff_url(handoff)}\n",
        )
    enqueue_webhook(
        "handoff.escalated",
        webhook_payload(handoff, action=escalation.action, level=escalation.level),
        now=now,
    )


def _reassign(handoff: Handoff, escalation, rep, *, now: dt.datetime) -> None:
    """Give the handoff to the next rep by the same rules, with a fresh SLA."""
    if _moved_on(handoff, escalation):
        return
    previous, decision = _move_to_next_rep(
        handoff,
        now=now,
        why="Reassigned after an SLA breach",
        payload={"level": escalation.level},
    )
    if decision.user is None:
        escalation.note = "no other rep is free; the handoff stays"
        escalation.save(update_fields=["note"])
        logger.warning(
            "No rep to reassign a breached handoff to",
            extra={"handoff_id": handoff.pk},
        )
        return
    escalation.to_user = decision.user
    escalation.note = f"from {previous} to {decision.user}"[:255]
    escalation.save(update_fields=["to_user", "note"])


def _notify_manager(handoff: Handoff, escalation, rep, *, now: dt.datetime) -> None:
    """Tell the manager of the rep who breached: a task and an email."""
    manager = rep.manager.user if rep is not None and rep.manager else None
    if manager is None:
        escalation.note = "the rep has no manager"
        escalation.save(update_fields=["note"])
        logger.warning(
            "Breached handoff has no manager to escalate to",
            extra={"handoff_id": handoff.pk},
        )
        return

    contact = handoff.contact
    breached_by = rep.user
    now_with = ""
    if handoff.assignee_id != breached_by.pk:
        now_with = f" It is now with {handoff.assignee}."
    handoff.escalated_to = manager
    handoff.save(update_fields=["escalated_to"])
    Task.objects.create(
        contact=contact,
        assignee=manager,
        handoff=handoff,
        type=Task.Type.ESCALATION,
        title=f"SLA breached: {breached_by} has not answered the handoff of {contact}"[
            :255
        ],
        due_at=now,
        created_at=now,
    )
    escalation.to_user = manager
    escalation.save(update_fields=["to_user"])
    _notify(
        manager.email,
        f"SLA breached: handoff of {contact} to {breached_by}",
        f"{breached_by} did not accept or reject the handoff of {contact} "
        f"by {handoff.breached_at:%Y-%m-%d %H:%M} UTC.{now_with}\n"
        f"{handoff_url(handoff)}\n",
    )
    enqueue_webhook(
        "handoff.escalated",
        webhook_payload(handoff, action=escalation.action, level=escalation.level),
        now=now,
    )


ACTIONS = {
    HandoffEscalation.Action.REMIND: _remind,
    HandoffEscalation.Action.REASSIGN: _reassign,
    HandoffEscalation.Action.NOTIFY_MANAGER: _notify_manager,
}


def reassign_handoff(handoff: Handoff, *, now: dt.datetime, actor=None) -> Handoff:
    """Give an open handoff to the next rep by routing, on a manager's word.

    Routing passes the current assignee over; the new rep becomes the
    contact's owner and gets a follow-up, an email and a fresh SLA, and
    integrations get handoff.reassigned. A breach being escalated ends here:
    the handoff is pending again and the rest of that round is dropped.
    Raise NurtureError for an actor who is not a manager, a decided handoff,
    or when no other rep is free.
    """
    if actor is not None and not can_see_all(actor):
        raise NurtureError("only a manager can reassign a handoff", field="assignee")

    with transaction.atomic():
        locked = _lock_open(handoff)
        why = f"Reassigned by {actor}" if actor is not None else "Reassigned"
        previous, decision = _move_to_next_rep(locked, now=now, why=why)
        if decision.user is None:
            raise NurtureError(
                f"no other rep is free ({decision.reason})", field="assignee"
            )
        if locked.status == Handoff.Status.BREACHED:
            locked.status = Handoff.Status.PENDING
            locked.save(update_fields=["status"])
    logger.info(
        "Handoff reassigned",
        extra={
            "handoff_id": locked.pk,
            "from_user_id": previous.pk if previous else None,
            "to_user_id": decision.user.pk,
        },
    )
    return locked


def _move_to_next_rep(
    handoff: Handoff, *, now: dt.datetime, why: str, payload: dict | None = None
):
    """Route the lead past its assignee and hand it over with a fresh SLA.

    The new rep becomes the owner, the previous rep's open tasks for the
    handoff are cancelled and the new rep gets a follow-up and an email;
    integrations get handoff.reassigned with ``payload`` added. Return the
    previous assignee and the routing decision; a decision without a user
    changed nothing.
    """
    contact = handoff.contact
    previous = handoff.assignee
    excluded = [previous.pk] if previous is not None else []
    decision = choose_assignee(contact, now=now, exclude_user_ids=excluded)
    if decision.user is None:
        return previous, decision

    handoff.assignee = decision.user
    handoff.routing_rule = decision.rule
    handoff.routing_reason = f"{why}: {decision.reason}"
    handoff.sla_due_at = add_business_hours(
        calendar_for(decision.rep), now, response_hours(handoff.sla_policy)
    )
    handoff.save(
        update_fields=["assignee", "routing_rule", "routing_reason", "sla_due_at"]
    )
    contact.owner = decision.user
    contact.save(update_fields=["owner", "updated_at"])
    handoff.tasks.filter(status=Task.Status.OPEN, assignee=previous).update(
        status=Task.Status.CANCELLED, completed_at=now
    )
    _create_follow_up(handoff, now=now)

    _notify_assignee(handoff, decision.rep, headline="Lead reassigned to you")
    enqueue_webhook(
        "handoff.reassigned",
        webhook_payload(
            handoff,
            from_user_id=previous.pk if previous else None,
            **(payload or {}),
        ),
        now=now,
    )
    return previous, decision


def _rep_of(user_id: int | None) -> Rep | None:
    if user_id is None:
        return None
    return (
        Rep.objects.select_related("user", "manager__user")
        .filter(user_id=user_id)
        .first()
    )


# Notifications --------------------------------------------------------------


def webhook_payload(handoff: Handoff, **extra) -> dict:
    """Describe a handoff for integrations: ids, people, deadlines, link."""
    return {
        "handoff_id": handoff.pk,
        "contact_id": handoff.contact_id,
        "assignee_id": handoff.assignee_id,
        "status": handoff.status,
        "created_at": handoff.created_at,
        "sla_due_at": handoff.sla_due_at,
        "url": handoff_url(handoff),
        **extra,
    }


def handoff_url(handoff: Handoff) -> str:
    """Return the absolute admin address of a handoff."""
    try:
        path = reverse("admin:nurture_handoff_change", args=[handoff.pk])
    except NoReverseMatch:
        path = f"/admin/nurture/handoff/{handoff.pk}/change/"
    return conf.get("NURTURE_SITE_URL").rstrip("/") + path


def _notify_assignee(handoff: Handoff, rep: Rep | None, *, headline: str) -> None:
    """Email the assignee the lead, the deadline in their own time and a link."""
    _notify_many([_assignee_message(handoff, rep, headline=headline)])


def _assignee_message(handoff: Handoff, rep: Rep | None, *, headline: str):
    """Return the (subject, body, sender, recipients) of an assignee's email."""
    zone = calendar_for(rep).zone
    local_due = handoff.sla_due_at.astimezone(zone)
    due_text = f"{local_due:%Y-%m-%d %H:%M} {zone.key}"
    return (
        f"{headline}: {handoff.contact} (respond by {due_text})",
        f"{handoff.contact} has been handed to you by the nurture programme.\n"
        f"Routing: {handoff.routing_reason}\n"
        f"Please accept or reject by {due_text}:\n"
        f"{handoff_url(handoff)}\n",
        settings.DEFAULT_FROM_EMAIL,
        [handoff.assignee.email] if handoff.assignee.email else [],
    )


def _notify_many(messages: list[tuple]) -> None:
    """Send emails together once the surrounding transaction has committed."""
    messages = [message for message in messages if message[3]]
    if messages:
        transaction.on_commit(lambda: send_mass_mail(messages))


def _notify(recipient: str, subject: str, body: str) -> None:
    """Email one person once the surrounding transaction has committed."""
    if not recipient:
        return
    transaction.on_commit(
        lambda: send_mail(subject, body, settings.DEFAULT_FROM_EMAIL, [recipient])
    )
