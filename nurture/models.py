"""Cadences, the touches they produce, scoring, routing and handoffs."""

from django.conf import settings
from django.db import models
from django.db.models import Q

from crm.models import Contact, can_see_all


class Channel(models.TextChoices):
    EMAIL = "email", "Email"
    CALL = "call", "Call"
    LINKEDIN = "linkedin", "LinkedIn"
    RETARGETING = "retargeting", "Retargeting audience"
    DIRECT_MAIL = "direct_mail", "Direct mail"


# Channels whose step is done by a person: the engine creates a rep task.
TASK_CHANNELS = frozenset({Channel.CALL, Channel.LINKEDIN, Channel.DIRECT_MAIL})


class Cadence(models.Model):
    """An ordered, multi-channel sequence of steps that contacts walk through."""

    class Reenrollment(models.TextChoices):
        NEVER = "never", "Never"
        AFTER_DAYS = "after_days", "After a number of days"

    name = models.CharField(max_length=200, unique=True)
    description = models.TextField(blank=True)
    is_active = models.BooleanField(default=True)
    send_window_start = models.TimeField(default="08:00")
    send_window_end = models.TimeField(default="18:00")
    send_weekdays = models.JSONField(
        default=list,
        blank=True,
        help_text="ISO weekdays (1 = Monday) on which touches go out; "
        "empty means Monday to Friday.",
    )
    exit_on_reply = models.BooleanField(default=True)
    exit_on_meeting = models.BooleanField(default=True)
    exit_on_handoff = models.BooleanField(default=True)
    reenrollment = models.CharField(
        max_length=16, choices=Reenrollment.choices, default=Reenrollment.NEVER
    )
    reenroll_after_days = models.PositiveIntegerField(null=True, blank=True)
    sender = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="Whose name emails carry when the contact has no owner.",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def weekdays(self) -> list[int]:
        return list(self.send_weekdays or [1, 2, 3, 4, 5])


class Step(models.Model):
    """One touch of a cadence: what to do, on which channel, after what wait."""

    class WaitUnit(models.TextChoices):
        HOURS = "hours", "Hours"
        DAYS = "days", "Calendar days"
        BUSINESS_DAYS = "business_days", "Business days"

    cadence = models.ForeignKey(Cadence, on_delete=models.CASCADE, related_name="steps")
    position = models.PositiveSmallIntegerField()
    name = models.CharField(max_length=200, blank=True)
    channel = models.CharField(max_length=16, choices=Channel.choices)
    wait_amount = models.PositiveIntegerField(
        default=0, help_text="How long after the previous step this one is due."
    )
    wait_unit = models.CharField(
        max_length=16, choices=WaitUnit.choices, default=WaitUnit.DAYS
    )
    subject = models.CharField(max_length=255, blank=True)
    body = models.TextField(
        blank=True,
        help_text="Django template. Context: contact, account, sender, step.",
    )
    task_instructions = models.TextField(blank=True)

    class Meta:
        ordering = ["cadence", "position"]
        constraints = [
            models.UniqueConstraint(
                fields=["cadence", "position"], name="nurture_step_position_unique"
            ),
        ]

    def __str__(self) -> str:
        return self.name or f"{self.cadence} #{self.position} ({self.channel})"

    @property
    def is_task(self) -> bool:
        return self.channel in TASK_CHANNELS


class EnrollmentQuerySet(models.QuerySet):
    def active(self) -> "EnrollmentQuerySet":
        """Enrollments still walking their cadence."""
        return self.filter(state=Enrollment.State.ACTIVE)

    def due(self, now) -> "EnrollmentQuerySet":
        """Active enrollments whose next step is due at ``now``."""
        return self.active().filter(next_due_at__lte=now)

    def visible_to(self, user) -> "EnrollmentQuerySet":
        """Enrollments of the contacts a user may see."""
        if can_see_all(user):
            return self
        return self.filter(contact__owner=user)


class Enrollment(models.Model):
    """A contact walking one cadence."""

    class State(models.TextChoices):
        ACTIVE = "active", "Active"
        PAUSED = "paused", "Paused"
        COMPLETED = "completed", "Completed"
        EXITED = "exited", "Exited"

    class ExitReason(models.TextChoices):
        NONE = "", "-"
        REPLIED = "replied", "Replied"
        MEETING = "meeting", "Meeting booked"
        HANDOFF = "handoff", "Handed off to sales"
        UNSUBSCRIBED = "unsubscribed", "Unsubscribed"
        BOUNCED = "bounced", "Hard bounce"
        DO_NOT_CONTACT = "do_not_contact", "Do not contact"
        MANUAL = "manual", "Removed by a user"

    contact = models.ForeignKey(
        Contact, on_delete=models.CASCADE, related_name="enrollments"
    )
    cadence = models.ForeignKey(
        Cadence, on_delete=models.CASCADE, related_name="enrollments"
    )
    state = models.CharField(max_length=16, choices=State.choices, default=State.ACTIVE)
    next_position = models.PositiveSmallIntegerField(
        default=1, help_text="Position of the next step to run."
    )
    next_due_at = models.DateTimeField(null=True, blank=True)
    enrolled_at = models.DateTimeField()
    enrolled_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    paused_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)
    exit_reason = models.CharField(
        max_length=16, choices=ExitReason.choices, blank=True, default=""
    )
    claimed_until = models.DateTimeField(
        null=True,
        blank=True,
        help_text="A dispatcher holds this enrollment until then.",
    )

    objects = EnrollmentQuerySet.as_manager()

    class Meta:
        ordering = ["-enrolled_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["contact", "cadence"],
                condition=Q(state__in=["active", "paused"]),
                name="nurture_one_open_enrollment",
            ),
        ]
        indexes = [
            models.Index(
                fields=["next_due_at"],
                condition=Q(state="active"),
                name="nurture_enrollment_due_idx",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.contact} in {self.cadence}"


class Touch(models.Model):
    """One step executed for one enrollment."""

    class Status(models.TextChoices):
        SENDING = "sending", "Sending"
        SENT = "sent", "Sent"
        TASK_CREATED = "task_created", "Task created"
        SKIPPED = "skipped", "Skipped"
        FAILED = "failed", "Failed"

    class Outcome(models.TextChoices):
        NONE = "", "-"
        OPENED = "opened", "Opened"
        CLICKED = "clicked", "Clicked"
        REPLIED = "replied", "Replied"
        BOUNCED = "bounced", "Bounced"

    enrollment = models.ForeignKey(
        Enrollment, on_delete=models.CASCADE, related_name="touches"
    )
    step = models.ForeignKey(Step, on_delete=models.PROTECT, related_name="touches")
    contact = models.ForeignKey(
        Contact, on_delete=models.CASCADE, related_name="touches"
    )
    channel = models.CharField(max_length=16, choices=Channel.choices)
    status = models.CharField(max_length=16, choices=Status.choices)
    created_at = models.DateTimeField()
    sent_at = models.DateTimeField(null=True, blank=True)
    message_id = models.CharField(max_length=255, blank=True)
    provider_message_id = models.CharField(max_length=255, blank=True)
    outcome = models.CharField(
        max_length=16, choices=Outcome.choices, blank=True, default=""
    )
    detail = models.CharField(
        max_length=255, blank=True, help_text="Why it was skipped or failed."
    )
    attempts = models.PositiveSmallIntegerField(default=0)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name_plural = "touches"
        constraints = [
            models.UniqueConstraint(
                fields=["enrollment", "step"], name="nurture_one_touch_per_step"
            ),
        ]
        indexes = [models.Index(fields=["contact", "-created_at"])]

    def __str__(self) -> str:
        return f"{self.get_channel_display()} to {self.contact_id} ({self.status})"


class TaskQuerySet(models.QuerySet):
    def open(self) -> "TaskQuerySet":
        """Tasks still waiting for their rep."""
        return self.filter(status=Task.Status.OPEN)

    def overdue(self, now) -> "TaskQuerySet":
        """Open tasks whose due time has passed."""
        return self.open().filter(due_at__lt=now)

    def visible_to(self, user) -> "TaskQuerySet":
        """Tasks a user may see: all for managers, their own for reps."""
        if can_see_all(user):
            return self
        return self.filter(assignee=user)


class Task(models.Model):
    """Work for a rep: a call, a LinkedIn message, a follow-up."""

    class Type(models.TextChoices):
        CALL = "call", "Call"
        LINKEDIN = "linkedin", "LinkedIn"
        DIRECT_MAIL = "direct_mail", "Direct mail"
        FOLLOW_UP = "follow_up", "Follow up a handoff"
        ESCALATION = "escalation", "SLA escalation"

    class Status(models.TextChoices):
        OPEN = "open", "Open"
        DONE = "done", "Done"
        CANCELLED = "cancelled", "Cancelled"

    class Outcome(models.TextChoices):
        NONE = "", "-"
        CONNECTED = "connected", "Connected"
        VOICEMAIL = "voicemail", "Left voicemail"
        NO_ANSWER = "no_answer", "No answer"
        SENT = "sent", "Message sent"
        NOT_INTERESTED = "not_interested", "Not interested"

    contact = models.ForeignKey(Contact, on_delete=models.CASCADE, related_name="tasks")
    assignee = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="nurture_tasks",
    )
    touch = models.OneToOneField(
        Touch, null=True, blank=True, on_delete=models.SET_NULL, related_name="task"
    )
    handoff = models.ForeignKey(
        "Handoff",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="tasks",
    )
    type = models.CharField(max_length=16, choices=Type.choices)
    title = models.CharField(max_length=255)
    instructions = models.TextField(blank=True)
    due_at = models.DateTimeField(db_index=True)
    status = models.CharField(
        max_length=16, choices=Status.choices, default=Status.OPEN
    )
    outcome = models.CharField(
        max_length=16, choices=Outcome.choices, blank=True, default=""
    )
    created_at = models.DateTimeField()
    completed_at = models.DateTimeField(null=True, blank=True)

    objects = TaskQuerySet.as_manager()

    class Meta:
        ordering = ["due_at", "id"]
        indexes = [models.Index(fields=["assignee", "status", "due_at"])]

    def __str__(self) -> str:
        return self.title


class ScoringModel(models.Model):
    """A named set of scoring rules with the thresholds that qualify a lead."""

    name = models.CharField(max_length=100, unique=True)
    is_default = models.BooleanField(default=False)
    mql_threshold = models.IntegerField(default=60)
    sql_threshold = models.IntegerField(null=True, blank=True)
    intent_half_life_days = models.FloatField(
        default=30, help_text="Intent points halve after this many days."
    )

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(
                fields=["is_default"],
                condition=Q(is_default=True),
                name="nurture_one_default_scoring_model",
            ),
        ]

    def __str__(self) -> str:
        return self.name


class ScoringRule(models.Model):
    """Points for a contact attribute (fit) or an engagement event (intent)."""

    class Kind(models.TextChoices):
        FIT = "fit", "Fit"
        INTENT = "intent", "Intent"

    class Operator(models.TextChoices):
        EQUALS = "equals", "equals"
        IN = "in", "is one of (comma-separated)"
        CONTAINS = "contains", "contains"
        GTE = "gte", "at least"
        LTE = "lte", "at most"
        IS_SET = "is_set", "is set"
        IS_BLANK = "is_blank", "is blank"
        IS_TRUE = "is_true", "is true"

    model = models.ForeignKey(
        ScoringModel, on_delete=models.CASCADE, related_name="rules"
    )
    name = models.CharField(max_length=200)
    kind = models.CharField(max_length=8, choices=Kind.choices)
    event_type = models.CharField(
        max_length=32,
        blank=True,
        help_text="Intent rules: the engagement event type they score.",
    )
    field = models.CharField(
        max_length=100,
        blank=True,
        help_text="Fit rules: a contact field or attributes key (account__industry "
        "for the account). Intent rules: an event property, or blank.",
    )
    operator = models.CharField(
        max_length=16, choices=Operator.choices, default=Operator.EQUALS
    )
    value = models.CharField(max_length=255, blank=True)
    points = models.IntegerField()
    is_active = models.BooleanField(default=True)

    class Meta:
        ordering = ["model", "kind", "name"]
        constraints = [
            models.UniqueConstraint(
                fields=["model", "name"], name="nurture_rule_name_unique"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.points:+d})"


class RoutingRule(models.Model):
    """Send matching contacts to a region's reps; first match by position wins."""

    position = models.PositiveIntegerField(unique=True)
    name = models.CharField(max_length=200)
    field = models.CharField(
        max_length=100,
        blank=True,
        help_text="Contact field to test; blank matches every contact.",
    )
    values = models.CharField(
        max_length=1000, blank=True, help_text="Comma-separated values that match."
    )
    region = models.CharField(max_length=64, blank=True)
    rep = models.ForeignKey(
        "crm.Rep",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        help_text="Assign to this rep instead of a region's least-loaded rep.",
    )
    is_active = models.BooleanField(default=True)

    class Meta:
        ordering = ["position"]

    def __str__(self) -> str:
        return self.name


class HandoffQuerySet(models.QuerySet):
    def pending(self) -> "HandoffQuerySet":
        """Handoffs the rep has neither accepted nor rejected."""
        return self.filter(status__in=Handoff.OPEN_STATUSES)

    def breached(self, now) -> "HandoffQuerySet":
        """Pending handoffs past their SLA deadline and not yet flagged."""
        return self.filter(status=Handoff.Status.PENDING, sla_due_at__lt=now)

    def visible_to(self, user) -> "HandoffQuerySet":
        """Handoffs a user may see: all for managers, their own for reps."""
        if can_see_all(user):
            return self
        return self.filter(assignee=user)


class Handoff(models.Model):
    """A qualified lead passed from marketing to a rep, with an SLA to act."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        BREACHED = "breached", "Breached, escalated"
        ACCEPTED = "accepted", "Accepted"
        REJECTED = "rejected", "Rejected"

    OPEN_STATUSES = (Status.PENDING, Status.BREACHED)

    contact = models.ForeignKey(
        Contact, on_delete=models.CASCADE, related_name="handoffs"
    )
    assignee = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="handoffs",
    )
    routing_rule = models.ForeignKey(
        RoutingRule, null=True, blank=True, on_delete=models.SET_NULL
    )
    routing_reason = models.CharField(max_length=255, blank=True)
    status = models.CharField(
        max_length=16, choices=Status.choices, default=Status.PENDING
    )
    context = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(db_index=True)
    sla_due_at = models.DateTimeField()
    accepted_at = models.DateTimeField(null=True, blank=True)
    rejected_at = models.DateTimeField(null=True, blank=True)
    rejection_reason = models.CharField(max_length=255, blank=True)
    breached_at = models.DateTimeField(null=True, blank=True)
    escalated_to = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="escalated_handoffs",
    )

    objects = HandoffQuerySet.as_manager()

    class Meta:
        ordering = ["sla_due_at", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["contact"],
                condition=Q(status__in=["pending", "breached"]),
                name="nurture_one_open_handoff",
            ),
        ]
        indexes = [models.Index(fields=["status", "sla_due_at"])]

    def __str__(self) -> str:
        return f"Handoff of {self.contact} to {self.assignee}"
