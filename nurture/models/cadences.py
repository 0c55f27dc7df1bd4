"""Cadences, their steps, the contacts walking them and the touches made."""

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
    stop_account_on_reply = models.BooleanField(
        default=False,
        help_text="When one contact replies, stop every contact of the same "
        "account in this cadence.",
    )
    skip_holidays = models.BooleanField(
        default=False,
        help_text="Do not send on public holidays of the contact's country.",
    )
    paused_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text="Set while the whole cadence is paused.",
    )
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
    send_at_local = models.TimeField(
        null=True,
        blank=True,
        help_text="Send at this time of day in the contact's zone.",
    )
    skip_conditions = models.JSONField(
        default=list,
        blank=True,
        help_text="Names of conditions that skip this step, e.g. "
        '"previous_email_not_opened", "no_linkedin_url".',
    )

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


class StepVariant(models.Model):
    """An A/B variant of an email step; contacts split between them."""

    step = models.ForeignKey(Step, on_delete=models.CASCADE, related_name="variants")
    label = models.CharField(max_length=32)
    subject = models.CharField(max_length=255)
    body = models.TextField()
    weight = models.PositiveSmallIntegerField(default=1)
    is_active = models.BooleanField(default=True)

    class Meta:
        ordering = ["step", "label"]
        constraints = [
            models.UniqueConstraint(
                fields=["step", "label"], name="nurture_variant_label_unique"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.step} variant {self.label}"


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
        COMPLAINED = "complained", "Spam complaint"
        ACCOUNT_REPLIED = "account_replied", "Someone at the account replied"

    class PauseReason(models.TextChoices):
        NONE = "", "-"
        MANUAL = "manual", "Paused by a user"
        OUT_OF_OFFICE = "out_of_office", "Out of office"

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
    pause_reason = models.CharField(
        max_length=16, choices=PauseReason.choices, blank=True, default=""
    )
    resume_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text="A paused enrollment resumes by itself then (out of office).",
    )
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
    variant = models.ForeignKey(
        StepVariant,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="touches",
    )
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
    retry_at = models.DateTimeField(
        null=True, blank=True, help_text="When a failed send is tried again."
    )
    local_zone = models.CharField(
        max_length=100,
        blank=True,
        help_text="The zone the send window was judged in, and where it came "
        "from (contact, account, country or default).",
    )
    opened_at = models.DateTimeField(null=True, blank=True)
    clicked_at = models.DateTimeField(null=True, blank=True)
    replied_at = models.DateTimeField(null=True, blank=True)
    bounced_at = models.DateTimeField(null=True, blank=True)
    exported_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text="Direct mail: when the touch went out in a print export.",
    )

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


class ContentItem(models.Model):
    """A piece of content a cadence can offer: a case study, guide, webinar."""

    class Kind(models.TextChoices):
        CASE_STUDY = "case_study", "Case study"
        GUIDE = "guide", "Guide"
        WEBINAR = "webinar", "Webinar"
        DEMO = "demo", "Demo"
        ARTICLE = "article", "Article"

    class BuyerStage(models.TextChoices):
        AWARENESS = "awareness", "Awareness"
        CONSIDERATION = "consideration", "Consideration"
        DECISION = "decision", "Decision"

    title = models.CharField(max_length=255)
    url = models.URLField()
    kind = models.CharField(max_length=16, choices=Kind.choices)
    buyer_stage = models.CharField(max_length=16, choices=BuyerStage.choices)
    personas = models.JSONField(
        default=list, blank=True, help_text="Occupations or titles it suits."
    )
    industries = models.JSONField(default=list, blank=True)
    priority = models.PositiveSmallIntegerField(
        default=100, help_text="Lower comes first among equally good matches."
    )
    is_active = models.BooleanField(default=True)

    class Meta:
        ordering = ["buyer_stage", "priority", "title"]

    def __str__(self) -> str:
        return self.title


class AudienceMember(models.Model):
    """A contact in a retargeting audience that ad integrations read."""

    audience = models.CharField(max_length=100, db_index=True)
    contact = models.ForeignKey(
        Contact, on_delete=models.CASCADE, related_name="audiences"
    )
    touch = models.ForeignKey(
        Touch, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    added_at = models.DateTimeField()
    removed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["audience", "-added_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["audience", "contact"], name="nurture_audience_member_unique"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.contact_id} in {self.audience}"
