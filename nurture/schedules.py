"""The django-q2 schedules that keep the engine running."""

import logging

from django_q.models import Schedule

from nurture import conf

logger = logging.getLogger(__name__)

# Schedule name -> the task it runs; names are how re-runs find them again.
ENGINE_SCHEDULES = {
    "nurture: dispatch due touches": "nurture.tasks.dispatch_due_touches_task",
    "nurture: rescore contacts": "nurture.tasks.rescore_contacts_task",
    "nurture: enforce handoff SLAs": "nurture.tasks.enforce_handoff_slas_task",
    "nurture: deliver webhooks": "nurture.tasks.deliver_webhooks_task",
    "nurture: hand off waiting leads": "nurture.tasks.hand_off_waiting_leads_task",
    "nurture: persist decayed scores": "nurture.tasks.decay_scores_task",
    # Cheap and idempotent (two set-based updates), so it shares the interval.
    "nurture: flag stale opportunities": (
        "nurture.tasks.flag_stale_opportunities_task"
    ),
    "nurture: resume returned enrollments": (
        "nurture.tasks.resume_returned_enrollments_task"
    ),
}


def ensure_schedules() -> dict[str, bool]:
    """Create or update one repeating schedule per engine task, by name.

    Return, per schedule name, whether it was created (False: updated).
    """
    minutes = conf.get("NURTURE_SCHEDULE_MINUTES")
    result = {}
    for name, func in ENGINE_SCHEDULES.items():
        _, created = Schedule.objects.update_or_create(
            name=name,
            defaults={
                "func": func,
                "schedule_type": Schedule.MINUTES,
                "minutes": minutes,
                "repeats": -1,
            },
        )
        result[name] = created
    logger.info("Engine schedules ensured every %d minutes", minutes)
    return result
