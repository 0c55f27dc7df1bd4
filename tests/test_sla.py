"""SLA policies, business-hours deadlines and escalation exactly once."""

import datetime as dt
import threading

import pytest
from django.core import mail
from django.db import connection, connections

from crm.models import LifecycleStage
from nurture.models import Handoff, HandoffEscalation, SlaPolicy, Task
from nurture.services.handoffs import enforce_handoff_slas, hand_off, sla_policy_for
from tests.factories import (
    ContactFactory,
    RepFactory,
    RoutingRuleFactory,
    SegmentFactory,
    UserFactory,
)

MONDAY_10 = dt.datetime(2025, 3, 3, 10, 0, tzinfo=dt.UTC)
FAR_LATER = MONDAY_10 + dt.timedelta(days=7)
CHAIN = [
    {"action": "remind", "after_business_hours": 0},
    {"action": "reassign", "after_business_hours": 2},
    {"action": "notify_manager", "after_business_hours": 4},
]


@pytest.fixture
def team():
    """Two Central reps (UTC, 9 to 5) with one manager, and a region rule."""
    manager = RepFactory(region="Central", user=UserFactory(username="boss"))
    ann = RepFactory(
        region="Central", manager=manager, user=UserFactory(username="ann")
    )
    bob = RepFactory(
        region="Central", manager=manager, user=UserFactory(username="bob")
    )
    RoutingRuleFactory(name="Central", region="Central")
    SlaPolicy.objects.create(
        position=10, name="Default", response_business_hours=4, escalation_chain=CHAIN
    )
    return {"manager": manager, "ann": ann, "bob": bob}


def _rep_of(team, user):
    return next(rep for rep in team.values() if rep.user_id == user.pk)


@pytest.mark.django_db
def test_first_active_policy_by_position_whose_score_and_segment_fit():
    """Policies are tried by position; score floor and segment must both fit."""
    vip = SegmentFactory(filters={"country": "Germany"})
    SlaPolicy.objects.create(position=1, name="Off", min_score=0, is_active=False)
    SlaPolicy.objects.create(position=2, name="Hot", min_score=80)
    SlaPolicy.objects.create(position=3, name="German", segment=vip)
    SlaPolicy.objects.create(position=4, name="Anyone")

    hot = ContactFactory(total_score=85, country="India")
    german = ContactFactory(total_score=10, country="Germany")
    other = ContactFactory(total_score=10, country="India")

    assert sla_policy_for(hot).name == "Hot"
    assert sla_policy_for(german).name == "German"
    assert sla_policy_for(other).name == "Anyone"


@pytest.mark.django_db
def test_deadline_counts_the_reps_business_hours():
    """A London rep handed a lead Friday 16:00 with 2 hours answers by Monday 10:00."""
    RepFactory(region="UK", time_zone="Europe/London", holiday_country="GB")
    RoutingRuleFactory(name="UK", region="UK")
    SlaPolicy.objects.create(position=1, name="Fast", response_business_hours=2)
    friday_4pm = dt.datetime(2025, 3, 7, 16, 0, tzinfo=dt.UTC)

    handoff = hand_off(ContactFactory(), now=friday_4pm)

    assert handoff.sla_policy.name == "Fast"
    assert handoff.sla_due_at == dt.datetime(2025, 3, 10, 10, 0, tzinfo=dt.UTC)
    assert handoff.tasks.get().due_at == handoff.sla_due_at


@pytest.mark.django_db
def test_steps_fall_due_in_business_hours_after_the_breach(team):
    """Remind at the breach, reassign two working hours later, manager at four."""
    handoff = hand_off(ContactFactory(), now=MONDAY_10)  # due Monday 14:00
    first_rep = handoff.assignee

    def actions_at(hour, day=3):
        now = dt.datetime(2025, 3, day, hour, 1, tzinfo=dt.UTC)
        return [action for _, _, action in enforce_handoff_slas(now=now).steps]

    assert actions_at(13) == []
    assert actions_at(14) == ["remind"]
    assert actions_at(15) == []
    assert actions_at(16) == ["reassign"]
    # 14:00 + 4 working hours is Tuesday 10:00 (Monday closes at 17:00).
    assert actions_at(17) == []
    assert actions_at(10, day=4) == ["notify_manager"]
    handoff.refresh_from_db()
    assert handoff.assignee != first_rep


@pytest.mark.django_db
def test_after_an_outage_one_sweep_runs_every_step_once_in_order(
    team, django_capture_on_commit_callbacks
):
    """A sweep long after every step ran them all, in order; another does nothing."""
    handoff = hand_off(ContactFactory(), now=MONDAY_10)
    first_user = handoff.assignee
    mail.outbox.clear()

    # when the cluster comes back a week later and sweeps twice
    with django_capture_on_commit_callbacks(execute=True):
        first = enforce_handoff_slas(now=FAR_LATER)
        second = enforce_handoff_slas(now=FAR_LATER + dt.timedelta(minutes=1))

    # then the breach and the three steps happened once each, in order
    assert first.breached == 1
    assert [a for _, _, a in first.steps] == ["remind", "reassign", "notify_manager"]
    assert (second.breached, second.steps) == (0, [])
    handoff.refresh_from_db()
    second_user = handoff.assignee
    manager_user = team["manager"].user
    assert second_user != first_user
    assert handoff.escalation_level == 3
    assert handoff.escalated_to == manager_user
    assert handoff.breached_at == dt.datetime(2025, 3, 3, 14, 0, tzinfo=dt.UTC)
    escalations = list(handoff.escalations.order_by("level"))
    assert [(e.level, e.action) for e in escalations] == [
        (1, "remind"),
        (2, "reassign"),
        (3, "notify_manager"),
    ]
    assert (escalations[1].from_user, escalations[1].to_user) == (
        first_user,
        second_user,
    )
    # and the new rep has a fresh deadline in their business hours
    assert handoff.sla_due_at == FAR_LATER + dt.timedelta(hours=4)
    assert handoff.contact.owner == second_user
    open_tasks = handoff.tasks.filter(status=Task.Status.OPEN)
    assert {(t.assignee, t.type) for t in open_tasks} == {
        (manager_user, Task.Type.ESCALATION),
        (second_user, Task.Type.FOLLOW_UP),
    }
    assert [m.to for m in mail.outbox] == [
        [first_user.email],
        [second_user.email],
        [manager_user.email],
    ]


@pytest.mark.django_db
def test_a_decided_handoff_escalates_no_further(team):
    """Once the rep accepts, the remaining steps never run."""
    from nurture.services.handoffs import accept_handoff

    contact = ContactFactory(lifecycle_stage=LifecycleStage.MQL)
    handoff = hand_off(contact, now=MONDAY_10)
    enforce_handoff_slas(now=dt.datetime(2025, 3, 3, 14, 30, tzinfo=dt.UTC))

    accept_handoff(handoff, now=dt.datetime(2025, 3, 3, 15, tzinfo=dt.UTC))
    later = enforce_handoff_slas(now=FAR_LATER)

    assert later.steps == []
    assert list(handoff.escalations.values_list("action", flat=True)) == ["remind"]


@pytest.mark.django_db
def test_reassign_without_another_free_rep_records_why(team):
    """With the other rep out of office the handoff stays and the row says why."""
    handoff = hand_off(ContactFactory(), now=MONDAY_10)
    other = team["bob"] if handoff.assignee == team["ann"].user else team["ann"]
    other.is_active = False
    other.save(update_fields=["is_active"])

    enforce_handoff_slas(now=FAR_LATER)

    reassign = handoff.escalations.get(level=2)
    assert reassign.to_user is None
    assert "no other rep" in reassign.note
    handoff.refresh_from_db()
    assert handoff.escalation_level == 3


@pytest.mark.django_db(transaction=True)
def test_two_sweeps_at_once_escalate_each_step_once(team):
    """Two workers sweeping the same breach at the same time run each step once."""
    if connection.vendor != "postgresql":
        pytest.skip("concurrent row locks need PostgreSQL")
    handoffs = [hand_off(ContactFactory(), now=MONDAY_10) for _ in range(6)]
    barrier = threading.Barrier(2)
    results, errors = [], []

    def sweep():
        try:
            barrier.wait()
            results.append(enforce_handoff_slas(now=FAR_LATER))
        except Exception as error:  # surfaced by the assertion below
            errors.append(error)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=sweep) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    assert sum(r.breached for r in results) == len(handoffs)
    assert sum(len(r.steps) for r in results) == 3 * len(handoffs)
    assert HandoffEscalation.objects.count() == 3 * len(handoffs)
    assert Task.objects.filter(type=Task.Type.ESCALATION).count() == len(handoffs)
    assert set(Handoff.objects.values_list("escalation_level", flat=True)) == {3}


@pytest.mark.django_db
def test_default_programme_adds_the_default_sla_policy_once():
    """The default policy is created once and an operator's edit is kept."""
    from nurture.services.programme import ensure_default_programme

    first = ensure_default_programme()
    SlaPolicy.objects.filter(name__startswith="First touch").update(
        response_business_hours=6
    )
    second = ensure_default_programme()

    (policy,) = SlaPolicy.objects.all()
    assert first["sla_policies"] == [policy.name]
    assert second["sla_policies"] == []
    assert policy.response_business_hours == 6
    assert [s["action"] for s in policy.escalation_chain] == [
        "remind",
        "reassign",
        "notify_manager",
    ]
