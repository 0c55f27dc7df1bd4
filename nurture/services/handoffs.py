"""Hand qualified leads to reps and record what the reps decide."""

import datetime as dt
import logging

from django.conf import settings
from django.core.mail import send_mail, send_mass_mail
from django.db import IntegrityError, transaction
from django.db.models import Count, Q
from django.urls import NoReverseMatch, reverse

from crm.models import Contact, LifecycleStage, Rep
from crm.services import change_stage
from nurture import conf
from nurture.models import Cadence, Enrollment, Handoff, Task, Touch

from .enrollment import exit_enrollments
from .errors import NurtureError
from .routing import Router, record_assignment, route_contact

logger = logging.getLogger(__name__)


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
        locked.save(update_fields=["status", "accepted_at"])
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
        locked.rejection_reason = f"{reason}: {note}".strip(": ")[:255]
        locked.save(update_fields=["status", "rejected_at", "rejection_reason"])
        _close_handoff_tasks(locked, now=now)
        change_stage(
            locked.contact,
            stages[reason],
            now=now,
            actor=actor,
            reason=f"handoff rejected ({reason})",
        )
    logger.info("Handoff rejected", extra={"handoff_id": locked.pk})
    return locked


def _close_handoff_tasks(handoff: Handoff, *, now: dt.datetime) -> None:
    """Close the follow-up and escalation tasks a decided handoff leaves."""
    handoff.tasks.filter(status=Task.Status.OPEN).update(
        status=Task.Status.DONE, completed_at=now
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


def hand_off(contact: Contact, *, now: dt.datetime, actor=None) -> Handoff | None:
    """Pass a contact to the rep routing picks, with context and an SLA.

    Return the contact's open handoff when there already is one, and None
    when no routing rule finds a free rep.
    """
    existing = Handoff.objects.pending().filter(contact=contact).first()
    if existing is not None:
        return existing
    decision = route_contact(contact, now=now)
    if decision.user is None:
        # Not an error: the lead waits, and hand_off_waiting_leads retries it
        # when a rep has room. Callers report waiting leads in aggregate.
        logger.info(
            "No rep to hand off to: %s",
            decision.reason,
            extra={"contact_id": contact.pk},
        )
        return None

    # TODO(#5): count the SLA in the rep's business hours; remove when
    # working hours are modelled per rep.
    sla_due_at = now + dt.timedelta(hours=conf.get("NURTURE_HANDOFF_SLA_HOURS"))
    try:
        with transaction.atomic():
            handoff = Handoff.objects.create(
                contact=contact,
                assignee=decision.user,
                routing_rule=decision.rule,
                routing_reason=decision.reason,
                context=build_context(contact, now=now),
                created_at=now,
                sla_due_at=sla_due_at,
            )
            _take_over(contact, handoff, decision.rep, now=now)
    except IntegrityError:
        # Someone handed the contact off meanwhile: theirs is the open one.
        return Handoff.objects.pending().filter(contact=contact).first()

    _notify(
        decision.user.email,
        f"New lead for you: {contact} (respond by {sla_due_at:%Y-%m-%d %H:%M} UTC)",
        f"{contact} has been handed to you by the nurture programme.\n"
        f"Routing: {decision.reason}\n"
        f"Please accept or reject by {sla_due_at:%Y-%m-%d %H:%M} UTC:\n"
        f"{handoff_url(handoff)}\n",
    )
    logger.info(
        "Contact handed off",
        extra={"handoff_id": handoff.pk, "contact_id": contact.pk},
    )
    return handoff


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
    router = Router.load()
    routable = []
    for contact in waiting:
        decision = router.route(contact)
        if decision.rep is not None:
            router.reserve(decision.rep, now=now)
            routable.append(contact)

    handed = sum(hand_off(contact, now=now) is not None for contact in routable)
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


def _take_over(contact: Contact, handoff: Handoff, rep, *, now: dt.datetime):
    """Make the rep the owner, stop nurture and put a follow-up in their queue."""
    contact.owner = handoff.assignee
    contact.save(update_fields=["owner", "updated_at"])
    record_assignment(rep, now=now)
    exit_enrollments(
        [contact.pk],
        Enrollment.ExitReason.HANDOFF,
        now=now,
        cadence_ids=Cadence.objects.filter(exit_on_handoff=True).values_list(
            "pk", flat=True
        ),
    )
    Task.objects.create(
        contact=contact,
        assignee=handoff.assignee,
        handoff=handoff,
        type=Task.Type.FOLLOW_UP,
        title=f"Accept or reject the handoff of {contact}"[:255],
        instructions=handoff.routing_reason,
        due_at=handoff.sla_due_at,
        created_at=now,
    )


def build_context(contact: Contact, *, now: dt.datetime) -> dict:
    """Snapshot what a rep needs to pick up the lead.

    The outcome held out from the source system is never part of it.
    """
    from .scoring import current_intent

    events = contact.events.order_by("-occurred_at", "-id")[:10]
    touches = contact.touches.select_related("step").order_by("-created_at", "-id")
    tasks = contact.tasks.open().order_by("due_at", "id")
    return {
        "score": {
            "fit": contact.fit_score,
            "intent": round(current_intent(contact, now=now), 1),
            "total": contact.total_score,
            "explanation": contact.score_explanation,
        },
        "account": contact.account.name if contact.account_id else "",
        "lifecycle_stage": contact.lifecycle_stage,
        "lead_source": contact.lead_source,
        "events": [
            {
                "type": event.type,
                "occurred_at": event.occurred_at.isoformat(),
                "properties": event.properties,
            }
            for event in events
        ],
        "touches": [
            {
                "step": str(touch.step),
                "channel": touch.channel,
                "status": touch.status,
                "outcome": touch.outcome,
                "sent_at": touch.sent_at.isoformat() if touch.sent_at else None,
            }
            for touch in touches
            if touch.status != Touch.Status.SKIPPED
        ],
        "open_tasks": [
            {"type": task.type, "title": task.title, "due_at": task.due_at.isoformat()}
            for task in tasks
        ],
    }


def enforce_handoff_slas(*, now: dt.datetime) -> int:
    """Flag handoffs past their SLA and escalate each to the rep's manager.

    Every handoff is flipped from pending to breached by a conditional
    update, and only the sweep whose update flipped it escalates, so two
    sweeps never escalate one breach twice. Return how many were escalated.
    """
    due = list(
        Handoff.objects.breached(now)
        .select_related("contact", "assignee__rep__manager__user")
        .order_by("sla_due_at", "pk")
    )

    flipped = []
    for handoff in due:
        manager = _manager_user(handoff)
        won = Handoff.objects.filter(
            pk=handoff.pk, status=Handoff.Status.PENDING
        ).update(status=Handoff.Status.BREACHED, breached_at=now, escalated_to=manager)
        if won:
            handoff.escalated_to = manager
            flipped.append(handoff)

    escalated = [h for h in flipped if h.escalated_to is not None]
    Task.objects.bulk_create(
        Task(
            contact=h.contact,
            assignee=h.escalated_to,
            handoff=h,
            type=Task.Type.ESCALATION,
            title=f"SLA breached: {h.assignee} has not answered the handoff "
            f"of {h.contact}"[:255],
            due_at=now,
            created_at=now,
        )
        for h in escalated
    )
    messages = [
        (
            f"SLA breached: handoff of {h.contact} to {h.assignee}",
            f"{h.assignee} did not accept or reject the handoff of {h.contact} "
            f"by {h.sla_due_at:%Y-%m-%d %H:%M} UTC.\n{handoff_url(h)}\n",
            settings.DEFAULT_FROM_EMAIL,
            [h.escalated_to.email],
        )
        for h in escalated
        if h.escalated_to.email
    ]
    if messages:
        transaction.on_commit(lambda: send_mass_mail(messages, fail_silently=False))

    for handoff in flipped:
        if handoff.escalated_to is None:
            logger.warning(
                "Breached handoff has no manager to escalate to",
                extra={"handoff_id": handoff.pk},
            )
    if flipped:
        logger.info("Flagged %d breached handoffs", len(flipped))
    return len(flipped)


def _manager_user(handoff: Handoff):
    rep = getattr(handoff.assignee, "rep", None) if handoff.assignee else None
    if rep is None or rep.manager is None:
        return None
    return rep.manager.user


def handoff_url(handoff: Handoff) -> str:
    """Return the absolute admin address of a handoff."""
    try:
        path = reverse("admin:nurture_handoff_change", args=[handoff.pk])
    except NoReverseMatch:
        path = f"/admin/nurture/handoff/{handoff.pk}/change/"
    return settings.SITE_URL.rstrip("/") + path


def _notify(recipient: str, subject: str, body: str) -> None:
    """Email one person once the surrounding transaction has committed."""
    if not recipient:
        return
    transaction.on_commit(
        lambda: send_mail(subject, body, settings.DEFAULT_FROM_EMAIL, [recipient])
    )
