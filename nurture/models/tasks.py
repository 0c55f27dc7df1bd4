"""Rep tasks: the manual work cadences and handoffs create."""

from django.conf import settings
from django.db import models

from crm.models import Contact, can_see_all

from .cadences import Touch


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
