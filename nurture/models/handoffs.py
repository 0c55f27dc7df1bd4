"""Handoffs from marketing to sales, their SLAs and escalations."""

from django.conf import settings
from django.db import models
from django.db.models import Q

from crm.models import Contact, can_see_all

from .routing import RoutingRule, Segment


class SlaPolicy(models.Model):
    """How fast a rep must act on a handoff, and how a breach escalates.

    Policies are tried by position; the first whose segment contains the
    contact (or that has no segment) applies.
    """

    position = models.PositiveIntegerField(unique=True)
    name = models.CharField(max_length=200)
    segment = models.ForeignKey(
        Segment, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    min_score = models.IntegerField(
        null=True, blank=True, help_text="Applies only at this score or above."
    )
    response_business_hours = models.FloatField(
        default=4, help_text="Business hours of the rep to accept or reject."
    )
    escalation_chain = models.JSONField(
        default=list,
        blank=True,
        help_text='Steps after a breach, in order, each {"action": "remind" | '
        '"reassign" | "notify_manager", "after_business_hours": N}.',
    )
    is_active = models.BooleanField(default=True)

    class Meta:
        ordering = ["position"]
        verbose_name = "SLA policy"
        verbose_name_plural = "SLA policies"

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
    routing_reason = models.TextField(blank=True)
    sla_policy = models.ForeignKey(
        SlaPolicy, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    escalation_level = models.PositiveSmallIntegerField(
        default=0, help_text="How many escalation steps have run."
    )
    first_touch_at = models.DateTimeField(
        null=True, blank=True, help_text="When the rep first acted on the lead."
    )
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


class HandoffEscalation(models.Model):
    """One escalation step taken for a breached handoff, exactly once."""

    class Action(models.TextChoices):
        REMIND = "remind", "Remind the rep"
        REASSIGN = "reassign", "Reassign to the next rep"
        NOTIFY_MANAGER = "notify_manager", "Notify the manager"

    handoff = models.ForeignKey(
        Handoff, on_delete=models.CASCADE, related_name="escalations"
    )
    level = models.PositiveSmallIntegerField()
    action = models.CharField(max_length=16, choices=Action.choices)
    happened_at = models.DateTimeField()
    from_user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    to_user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    note = models.CharField(max_length=255, blank=True)

    class Meta:
        ordering = ["handoff", "level"]
        constraints = [
            models.UniqueConstraint(
                fields=["handoff", "level"], name="nurture_escalation_once"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_action_display()} for handoff {self.handoff_id}"


class WebhookSubscription(models.Model):
    """An integration's endpoint for handoff and SLA events."""

    name = models.CharField(max_length=200)
    url = models.URLField(max_length=500)
    events = models.JSONField(
        default=list,
        blank=True,
        help_text='Event names, e.g. ["handoff.created", "handoff.breached"]; '
        "empty means all.",
    )
    secret = models.CharField(
        max_length=128, help_text="Signs each delivery (HMAC-SHA256)."
    )
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class WebhookDelivery(models.Model):
    """One event owed to one subscription: an outbox row, retried until done."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        DELIVERED = "delivered", "Delivered"
        FAILED = "failed", "Failed"

    subscription = models.ForeignKey(
        WebhookSubscription, on_delete=models.CASCADE, related_name="deliveries"
    )
    event = models.CharField(max_length=64)
    payload = models.JSONField()
    status = models.CharField(
        max_length=16, choices=Status.choices, default=Status.PENDING
    )
    attempts = models.PositiveSmallIntegerField(default=0)
    next_attempt_at = models.DateTimeField(db_index=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    response_status = models.PositiveSmallIntegerField(null=True, blank=True)
    error = models.CharField(max_length=255, blank=True)
    created_at = models.DateTimeField()

    class Meta:
        ordering = ["-created_at"]
        verbose_name_plural = "webhook deliveries"
        indexes = [
            models.Index(
                fields=["next_attempt_at"],
                condition=Q(status="pending"),
                name="nurture_webhook_due_idx",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.event} to {self.subscription}"
