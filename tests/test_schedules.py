"""Engine schedules exist once each; the scoring and SLA tasks call services."""

import datetime as dt

import pytest
from django.core.management import call_command
from django.utils import timezone
from django_q.models import Schedule

from crm.models import EngagementEvent
from nurture.models import Handoff
from nurture.schedules import ENGINE_SCHEDULES, ensure_schedules
from nurture.tasks import enforce_handoff_slas_task, rescore_contacts_task
from tests.factories import (
    EngagementEventFactory,
    HandoffFactory,
    ScoringModelFactory,
    ScoringRuleFactory,
)

pytestmark = pytest.mark.django_db


def test_ensure_schedules_twice_leaves_one_schedule_per_task(settings):
    """Re-running keeps one schedule per name, updated to the interval."""
    settings.NURTURE_SCHEDULE_MINUTES = 1
    first = ensure_schedules()
    settings.NURTURE_SCHEDULE_MINUTES = 5

    second = ensure_schedules()

    assert all(first.values()) and not any(second.values())
    assert Schedule.objects.count() == len(ENGINE_SCHEDULES) == 8
    for name, func in ENGINE_SCHEDULES.items():
        schedule = Schedule.objects.get(name=name)
        assert schedule.func == func
        assert schedule.schedule_type == Schedule.MINUTES
        assert schedule.minutes == 5
        assert schedule.repeats == -1


def test_scheduled_functions_are_importable():
    """Every schedule names a task function the cluster can import."""
    import importlib

    for func in ENGINE_SCHEDULES.values():
        module, name = func.rsplit(".", 1)
        assert callable(getattr(importlib.import_module(module), name))


def test_ensure_schedules_command(capsys):
    """The command reports each schedule, created then updated."""
    call_command("ensure_schedules")
    assert capsys.readouterr().out.count("created:") == len(ENGINE_SCHEDULES)
    call_command("ensure_schedules")
    assert capsys.readouterr().out.count("updated:") == len(ENGINE_SCHEDULES)


def test_rescore_task_works_through_every_batch(settings):
    """The task keeps taking batches until the backlog is scored."""
    settings.NURTURE_RESCORE_BATCH_SIZE = 2
    model = ScoringModelFactory(mql_threshold=10_000)
    ScoringRuleFactory(
        model=model, kind="intent", name="View", event_type="page_view", points=1
    )
    EngagementEventFactory.create_batch(5)

    assert rescore_contacts_task() == 5
    assert not EngagementEvent.objects.unscored().exists()


def test_sla_task_flags_overdue_handoffs():
    """The sweep task flags a handoff whose deadline has passed."""
    handoff = HandoffFactory(
        created_at=timezone.now() - dt.timedelta(hours=6),
        sla_due_at=timezone.now() - dt.timedelta(hours=1),
    )

    assert enforce_handoff_slas_task()["breached"] == 1
    handoff.refresh_from_db()
    assert handoff.status == Handoff.Status.BREACHED
