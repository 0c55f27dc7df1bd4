"""Template tags for the admin index: the signed-in user's queue."""

from django import template
from django.utils import timezone

from nurture.models import Handoff, Task

register = template.Library()

# How many handoffs and tasks the queue lists before "see all".
QUEUE_ROWS = 10


@register.inclusion_tag("admin/nurture/my_queue.html", takes_context=True)
def my_queue(context):
    """List the user's pending handoffs by deadline and their overdue tasks."""
    request = context["request"]
    user = request.user
    now = timezone.now()

    handoffs = (
        Handoff.objects.visible_to(user)
        .pending()
        .filter(assignee=user)
        .select_related("contact")
        .order_by("sla_due_at", "id")[:QUEUE_ROWS]
    )
    tasks = (
        Task.objects.visible_to(user)
        .overdue(now)
        .filter(assignee=user)
        .select_related("contact")
        .order_by("due_at", "id")[:QUEUE_ROWS]
    )
    return {
        "handoffs": [(h, h.sla_due_at - now) for h in handoffs],
        "tasks": list(tasks),
        "can_see": user.has_perm("nurture.view_handoff")
        or user.has_perm("nurture.view_task"),
    }
