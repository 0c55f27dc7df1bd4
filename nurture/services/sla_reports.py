"""What a rep has to do next and how well a team keeps its SLAs."""

import datetime as dt
import statistics
from dataclasses import dataclass, field

from django.db.models import Count, Q

from crm.models import Rep
from nurture.models import Handoff, Task

from .business_hours import business_hours_between, calendar_for

# Tasks due within this window count as "due" in the queue.
DUE_SOON = dt.timedelta(hours=24)
ATTAINMENT_DAYS = 30


@dataclass
class QueueItem:
    """One line of a rep's queue: a pending handoff or an open task."""

    kind: str  # "handoff" or "task"
    record: object
    title: str
    due_at: dt.datetime
    time_left: dt.timedelta

    @property
    def overdue(self) -> bool:
        return self.time_left < dt.timedelta()

    @property
    def time_left_text(self) -> str:
        """Say "2h 05m left" or "1h 10m overdue"."""
        minutes = int(abs(self.time_left.total_seconds()) // 60)
        text = f"{minutes // 60}h {minutes % 60:02d}m"
        return f"{text} overdue" if self.overdue else f"{text} left"


@dataclass
class RepQueue:
    """A rep's queue items, most urgent first, and counts by kind."""

    items: list[QueueItem]
    counts: dict[str, int]


def rep_queue(user, *, now: dt.datetime) -> RepQueue:
    """Return a user's pending handoffs and due or overdue tasks by time left.

    Two queries: the open handoffs and the open tasks due within a day.
    """
    handoffs = list(
        Handoff.objects.pending()
        .filter(assignee=user)
        .select_related("contact")
        .order_by("sla_due_at", "pk")
    )
    tasks = list(
        Task.objects.filter(
            assignee=user, status=Task.Status.OPEN, due_at__lte=now + DUE_SOON
        )
        .select_related("contact")
        .order_by("due_at", "pk")
    )
    items = [
        QueueItem(
            "handoff",
            handoff,
            f"Handoff: {handoff.contact}",
            handoff.sla_due_at,
            handoff.sla_due_at - now,
        )
        for handoff in handoffs
    ] + [
        QueueItem("task", task, task.title, task.due_at, task.due_at - now)
        for task in tasks
    ]
    items.sort(key=lambda item: (item.time_left, item.kind, item.record.pk))
    counts = {
        "pending_handoffs": len(handoffs),
        "breached_handoffs": sum(
            h.status == Handoff.Status.BREACHED or h.sla_due_at < now for h in handoffs
        ),
        "overdue_tasks": sum(t.due_at < now for t in tasks),
        "due_tasks": sum(t.due_at >= now for t in tasks),
    }
    return RepQueue(items, counts)


@dataclass
class RepSla:
    """One rep's SLA figures; with rep None, the team's total."""

    rep: Rep | None
    handoffs: int = 0
    decided: int = 0
    within_sla: int = 0
    breached: int = 0
    open_breaches: int = 0
    first_touch_hours: list[float] = field(default_factory=list)

    @property
    def attainment(self) -> float | None:
        """Share of measured handoffs decided within SLA, or None if none."""
        measured = self.within_sla + self.breached
        return self.within_sla / measured if measured else None

    @property
    def median_first_touch_hours(self) -> float | None:
        if not self.first_touch_hours:
            return None
        return statistics.median(self.first_touch_hours)


@dataclass
class TeamSla:
    """Per-rep figures and their total."""

    reps: list[RepSla]
    total: RepSla


def team_sla(manager_user, *, now: dt.datetime) -> TeamSla:
    """Summarise SLA attainment, time to first touch and open breaches.

    Attainment is the share of the last 30 days' handoffs that were
    accepted or rejected before their deadline, among those that were
    decided or have breached (handoffs still inside their SLA are not
    measured yet). Time to first touch is counted in the assignee's business
    hours. The team is the manager's reports, or every rep for a superuser.
    Queries stay constant in the number of reps: the reps, one aggregate
    grouped by assignee, one list of first touches.
    """
    reps = Rep.objects.select_related("user")
    if not manager_user.is_superuser:
        reps = reps.filter(manager__user=manager_user)
    by_user = {rep.user_id: RepSla(rep) for rep in reps.order_by("user__username")}

    since = now - dt.timedelta(days=ATTAINMENT_DAYS)
    recent = Handoff.objects.filter(
        assignee_id__in=list(by_user), created_at__gte=since
    )
    decided = Q(status__in=[Handoff.Status.ACCEPTED, Handoff.Status.REJECTED])
    rows = (
        Handoff.objects.filter(assignee_id__in=list(by_user))
        .order_by()
        .values("assignee_id")
        .annotate(
            handoffs=Count("pk", filter=Q(created_at__gte=since)),
            decided=Count("pk", filter=Q(created_at__gte=since) & decided),
            within=Count(
                "pk",
                filter=Q(created_at__gte=since, breached_at__isnull=True) & decided,
            ),
            breached=Count(
                "pk", filter=Q(created_at__gte=since, breached_at__isnull=False)
            ),
            open_breaches=Count(
                "pk",
                filter=Q(status=Handoff.Status.BREACHED)
                | Q(status=Handoff.Status.PENDING, sla_due_at__lt=now),
            ),
        )
    )
    for row in rows:
        summary = by_user[row["assignee_id"]]
        summary.handoffs = row["handoffs"]
        summary.decided = row["decided"]
        summary.within_sla = row["within"]
        summary.breached = row["breached"]
        summary.open_breaches = row["open_breaches"]

    touches = recent.filter(first_touch_at__isnull=False).values_list(
        "assignee_id", "created_at", "first_touch_at"
    )
    calendars = {user_id: calendar_for(s.rep) for user_id, s in by_user.items()}
    for user_id, created_at, first_touch_at in touches:
        by_user[user_id].first_touch_hours.append(
            business_hours_between(calendars[user_id], created_at, first_touch_at)
        )

    total = RepSla(rep=None)
    for summary in by_user.values():
        total.handoffs += summary.handoffs
        total.decided += summary.decided
        total.within_sla += summary.within_sla
        total.breached += summary.breached
        total.open_breaches += summary.open_breaches
        total.first_touch_hours += summary.first_touch_hours
    return TeamSla(list(by_user.values()), total)
