"""Rep work: finishing the tasks the engine creates."""

import datetime as dt

from nurture.models import Task

from .errors import NurtureError


def complete_task(
    task: Task, *, now: dt.datetime, outcome: str = "", actor=None
) -> Task:
    """Mark an open task done with its outcome."""
    if outcome and outcome not in Task.Outcome.values:
        raise NurtureError(f"unknown outcome {outcome!r}", field="outcome")
    updated = Task.objects.filter(pk=task.pk, status=Task.Status.OPEN).update(
        status=Task.Status.DONE, outcome=outcome, completed_at=now
    )
    if not updated:
        raise NurtureError("the task is not open", field="status")
    task.refresh_from_db()
    return task
