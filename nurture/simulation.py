"""Run the engine over simulated days, with simulated contacts and reps.

The simulation drives the same services the django-q2 schedules call, on a
moving clock, and plays the people the engine cannot: contacts who open,
click and reply, and reps who work their tasks and accept some handoffs in
time while letting others lapse. Every random choice comes from one seeded
generator, so a run can be repeated.

Mail is never delivered: the run swaps in Django's in-memory email backend,
so simulated sends reach no inbox (and no SMTP server) whatever the
settings say.

Nothing here reads ``Contact.known_converted``: that is the held-out truth.
Only ``funnel_report`` compares against it, after the run.
"""

import datetime as dt
import logging
import random
from collections import Counter
from dataclasses import dataclass, field

from django.core import mail
from django.db.models import Count, Q
from django.test.utils import override_settings

from crm.models import Contact, EngagementEvent, Rep
from nurture.models import Cadence, Channel, Enrollment, Handoff, Task, Touch
from nurture.services.business_hours import (
    WorkingCalendar,
    calendar_for,
    next_working_moment,
)
from nurture.services.dispatch import dispatch_due_touches
from nurture.services.engagement import ingest_events
from nurture.services.enrollment import enroll_contacts
from nurture.services.errors import NurtureError
from nurture.services.handoffs import (
    RejectReason,
    accept_handoff,
    enforce_handoff_slas,
    hand_off_waiting_leads,
    reject_handoff,
)
from nurture.services.programme import ensure_default_programme
from nurture.services.scoring import rescore_new_events
from nurture.services.tasks import complete_task

logger = logging.getLogger(__name__)

DEFAULT_CADENCE = "MQL nurture"
IN_MEMORY_EMAIL = "django.core.mail.backends.locmem.EmailBackend"
MAX_BATCHES_PER_TICK = 200


@dataclass
class Behaviour:
    """How the simulated people act; probabilities per opportunity."""

    email_open: float = 0.35
    email_click: float = 0.12
    email_reply: float = 0.04
    call_connect: float = 0.25
    linkedin_reply: float = 0.08
    # Share of handoffs a rep acts on inside the SLA; the rest lapse.
    handoff_in_time: float = 0.75
    # Of the handoffs acted on, the share rejected as "not now".
    handoff_reject: float = 0.10
    # Tasks one rep completes per working hour.
    tasks_per_hour: int = 6


@dataclass
class SimulationResult:
    started_at: dt.datetime
    ended_at: dt.datetime
    enrolled: int = 0
    events_ingested: int = 0
    events_scored: int = 0
    sla_breaches: int = 0
    ticks: int = 0
    emails_built: int = 0
    dispatch: Counter = field(default_factory=Counter)


class Simulation:
    """Advance a clock hour by hour and run the engine at each tick."""

    def __init__(
        self,
        *,
        start: dt.datetime,
        days: int,
        seed: int = 7,
        behaviour: Behaviour | None = None,
        tick: dt.timedelta = dt.timedelta(hours=1),
    ):
        self.start = start
        self.end = start + dt.timedelta(days=days)
        self.tick = tick
        self.random = random.Random(seed)
        self.behaviour = behaviour or Behaviour()
        self.result = SimulationResult(started_at=start, ended_at=self.end)
        # Each active rep's working calendar, by user id.
        self.calendars: dict[int, WorkingCalendar] = {}
        # Handoffs the reps will act on: handoff id -> (when, decision).
        self.plans: dict[int, tuple[dt.datetime, str]] = {}

    def run(self) -> SimulationResult:
        """Enroll the leads, then run every tick until the end of the period."""
        with override_settings(EMAIL_BACKEND=IN_MEMORY_EMAIL):
            mail.outbox = []
            return self._run()

    def _run(self) -> SimulationResult:
        ensure_default_programme()
        self.enroll_leads(now=self.start)
        self.result.enrolled = Enrollment.objects.active().count()
        self.calendars = {
            rep.user_id: calendar_for(rep) for rep in Rep.objects.filter(is_active=True)
        }

        now = self.start
        while now < self.end:
            self.step(now)
            self.result.emails_built += len(mail.outbox)
            mail.outbox.clear()
            now += self.tick
            self.result.ticks += 1
        return self.result

    def enroll_leads(self, *, now: dt.datetime) -> int:
        """Enroll every open lead in the default nurture cadence."""
        cadence = Cadence.objects.get(name=DEFAULT_CADENCE)
        leads = Contact.objects.filter(
            lifecycle_stage__in=[Contact.Stage.SUBSCRIBER, Contact.Stage.LEAD]
        ).values_list("pk", flat=True)
        return enroll_contacts(leads, cadence, now=now)

    def step(self, now: dt.datetime) -> None:
        """Run one tick: engine first, then the people react."""
        window_start = now - self.tick
        # Each call claims one batch; a tick ends when nothing more is due.
        for _ in range(MAX_BATCHES_PER_TICK):
            outcome = dispatch_due_touches(now=now)
            self.result.dispatch.update(outcome.as_dict())
            if not outcome.claimed:
                break
        self.react_to_touches(since=window_start, now=now)
        while scored := rescore_new_events(now=now):
            self.result.events_scored += scored
        self.work_tasks(now)
        self.decide_handoffs(now)
        self.result.sla_breaches += enforce_handoff_slas(now=now).breached
        hand_off_waiting_leads(now=now)

    def react_to_touches(self, *, since: dt.datetime, now: dt.datetime) -> None:
        """Let contacts open, click and reply to the emails just sent."""
        sent = Touch.objects.filter(
            channel=Channel.EMAIL,
            status=Touch.Status.SENT,
            sent_at__gt=since,
            sent_at__lte=now,
        ).values_list("pk", "contact_id")
        rows = []
        for touch_id, contact_id in sent:
            for event_type, chance in (
                (EngagementEvent.Type.EMAIL_OPEN, self.behaviour.email_open),
                (EngagementEvent.Type.EMAIL_CLICK, self.behaviour.email_click),
                (EngagementEvent.Type.EMAIL_REPLY, self.behaviour.email_reply),
            ):
                if self.random.random() >= chance:
                    break
                rows.append(
                    self.event(contact_id, event_type, now, f"{touch_id}:{event_type}")
                )
        self.ingest(rows, now=now)

    def work_tasks(self, now: dt.datetime) -> None:
        """Reps on shift complete their most urgent due tasks."""
        on_shift = [user_id for user_id in self.calendars if self.at_work(user_id, now)]
        if not on_shift:
            return
        rows = []
        for user_id in on_shift:
            tasks = Task.objects.open().filter(assignee_id=user_id, due_at__lte=now)
            for task in tasks.order_by("due_at", "pk")[: self.behaviour.tasks_per_hour]:
                outcome, event = self.task_outcome(task)
                try:
                    complete_task(task, now=now, outcome=outcome)
                except NurtureError:
                    continue
                if event:
                    rows.append(
                        self.event(task.contact_id, event, now, f"task{task.pk}")
                    )
        self.ingest(rows, now=now)

    def task_outcome(self, task: Task) -> tuple[str, str | None]:
        """Pick what happened when the rep did the task, and the event it makes."""
        roll = self.random.random()
        if task.type == Task.Type.CALL:
            if roll < self.behaviour.call_connect:
                return Task.Outcome.CONNECTED, EngagementEvent.Type.CALL_CONNECTED
            if roll < 0.6:
                return Task.Outcome.VOICEMAIL, None
            return Task.Outcome.NO_ANSWER, None
        if task.type == Task.Type.LINKEDIN and roll < self.behaviour.linkedin_reply:
            return Task.Outcome.SENT, EngagementEvent.Type.CHAT
        return Task.Outcome.SENT, None

    def decide_handoffs(self, now: dt.datetime) -> None:
        """Plan each new handoff's fate, then carry out the plans now due."""
        for handoff in Handoff.objects.pending().exclude(pk__in=self.plans):
            self.plans[handoff.pk] = self.plan_for(handoff)

        due = [pk for pk, (when, _) in self.plans.items() if when <= now]
        handoffs = (
            Handoff.objects.pending().filter(pk__in=due).select_related("contact")
        )
        for handoff in handoffs:
            _, decision = self.plans[handoff.pk]
            try:
                if decision == "accept":
                    accept_handoff(handoff, now=now)
                else:
                    reject_handoff(handoff, reason=RejectReason.NOT_NOW, now=now)
            except NurtureError:
                pass
        for pk in due:
            self.plans[pk] = (self.end + dt.timedelta(days=1), "done")

    def plan_for(self, handoff: Handoff) -> tuple[dt.datetime, str]:
        """Decide when the rep will act on a handoff and what they will do."""
        decision = (
            "reject"
            if self.random.random() < self.behaviour.handoff_reject
            else "accept"
        )
        window = handoff.sla_due_at - handoff.created_at
        if self.random.random() < self.behaviour.handoff_in_time:
            delay = window * self.random.uniform(0.1, 0.9)
        else:
            # Lapsed: picked up only after the escalation reached a manager.
            delay = window + dt.timedelta(hours=self.random.uniform(2, 48))
        return handoff.created_at + delay, decision

    def at_work(self, user_id: int, now: dt.datetime) -> bool:
        return next_working_moment(self.calendars[user_id], now) == now

    def event(self, contact_id: int, event_type: str, now: dt.datetime, key: str):
        return {
            "contact": contact_id,
            "type": event_type,
            "occurred_at": now,
            "source": "simulation",
            "properties": {},
            "external_id": f"sim:{key}",
        }

    def ingest(self, rows: list[dict], *, now: dt.datetime) -> None:
        if rows:
            result = ingest_events(rows, now=now)
            self.result.events_ingested += len(result.created)


def funnel_report() -> dict:
    """Summarise the funnel, and compare handoffs with the known outcomes.

    This is the only place that reads ``known_converted``.
    """
    contacts = Contact.objects.all()
    stages = dict(
        contacts.values_list("lifecycle_stage").annotate(n=Count("pk")).order_by()
    )
    touches = Counter(
        {
            (channel, status): n
            for channel, status, n in Touch.objects.values_list("channel", "status")
            .annotate(n=Count("pk"))
            .order_by()
        }
    )
    tasks = Task.objects.aggregate(
        created=Count("pk"), done=Count("pk", filter=Q(status=Task.Status.DONE))
    )
    handoffs = Handoff.objects.aggregate(
        created=Count("pk"),
        accepted=Count("pk", filter=Q(status=Handoff.Status.ACCEPTED)),
        rejected=Count("pk", filter=Q(status=Handoff.Status.REJECTED)),
        breached=Count("pk", filter=Q(breached_at__isnull=False)),
        open=Count("pk", filter=Q(status__in=Handoff.OPEN_STATUSES)),
    )
    enrollments = dict(
        Enrollment.objects.values_list("state").annotate(n=Count("pk")).order_by()
    )

    known = contacts.filter(known_converted__isnull=False)
    handed = known.filter(handoffs__isnull=False).distinct()
    not_handed = known.exclude(pk__in=Handoff.objects.values("contact_id"))
    return {
        "stages": stages,
        "touches": touches,
        "tasks": tasks,
        "handoffs": handoffs,
        "enrollments": enrollments,
        "conversion": {
            "base": rate(known),
            "handed_off": rate(handed),
            "not_handed_off": rate(not_handed),
        },
    }


def rate(queryset) -> dict:
    """Count a set of contacts and the share the source system saw convert."""
    totals = queryset.aggregate(
        n=Count("pk", distinct=True),
        converted=Count("pk", filter=Q(known_converted=True), distinct=True),
    )
    n, converted = totals["n"], totals["converted"]
    return {"n": n, "converted": converted, "rate": converted / n if n else None}
