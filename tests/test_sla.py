"""SLA policies, business-hours deadlines and escalation exactly once."""

import datetime as dt

import pytest
from django.core import mail
from django.db import connection

from crm.models import LifecycleStage
from nurture.models import Handoff, HandoffEscalation, SlaPolicy, Task
from nurture.services.handoffs import enforce_handoff_slas, hand_off, sla_policy_for
from tests.concurrency import run_at_once
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

    def sweep():
        return enforce_handoff_slas(now=FAR_LATER)

    results = run_at_once(sweep, sweep)

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


# Defects found by QA (issue 5) ---------------------------------------------


BAD_CHAINS = [
    ([1], "Step 1"),
    ({"a": 1}, "list of steps"),
    ([{"action": "explode"}], "unknown action 'explode'"),
    ([{"action": "remind", "after_business_hours": "x"}], "number of hours"),
    ([{"action": "remind", "after_business_hours": -1}], "0 or more"),
    ([{"action": "remind", "after_business_hours": float("nan")}], "number"),
    ([{"action": "remind", "after_business_hours": 10**9}], "at most"),
    ([{"action": "remind"}, {"action": "remind"}], "Step 2 repeats"),
    ([{"action": "remind", "hours": 2}], "unknown keys: hours"),
]


@pytest.mark.parametrize("chain, message", BAD_CHAINS)
def test_validate_escalation_chain_names_the_step_and_problem(chain, message):
    """Every chain the sweep could not run is refused with the step named."""
    from django.core.exceptions import ValidationError

    from nurture.services.handoffs import validate_escalation_chain

    with pytest.raises(ValidationError) as raised:
        validate_escalation_chain(chain)

    assert message in raised.value.messages[0]


def test_validate_escalation_chain_accepts_the_default_chain():
    """The shipped chain and an empty chain (no escalation) are valid."""
    from nurture.services.handoffs import validate_escalation_chain

    validate_escalation_chain(CHAIN)
    validate_escalation_chain([])


@pytest.mark.django_db
def test_a_policy_with_a_broken_chain_does_not_stop_the_sweep(team, caplog):
    """A chain written straight into the database escalates by the default.

    The other handoffs in the sweep escalate as usual and the bad policy is
    named in a warning.
    """
    # given a handoff under a broken policy and one under a good policy
    good = hand_off(ContactFactory(), now=MONDAY_10)
    broken_policy = SlaPolicy.objects.create(
        position=1,
        name="Broken",
        min_score=90,
        escalation_chain=[{"action": "remind", "after_business_hours": "x"}, 1],
    )
    bad = hand_off(ContactFactory(total_score=95), now=MONDAY_10)
    assert bad.sla_policy == broken_policy

    # when the sweep runs long after both deadlines
    result = enforce_handoff_slas(now=FAR_LATER)

    # then both breach and escalate; the broken one by the default chain
    assert result.breached == 2
    assert [e.action for e in good.escalations.all()] == [s["action"] for s in CHAIN]
    assert [e.action for e in bad.escalations.all()] == [
        "remind",
        "reassign",
        "notify_manager",
    ]
    assert f"SLA policy {broken_policy.pk} has an invalid escalation chain" in (
        caplog.text
    )


@pytest.mark.django_db
@pytest.mark.parametrize("hours", [-4, 0, 1e12])
def test_hand_off_survives_a_bad_stored_response_time(hours, settings, caplog):
    """A bad stored response time falls back to NURTURE_HANDOFF_SLA_HOURS."""
    settings.NURTURE_HANDOFF_SLA_HOURS = 3
    RepFactory(region="Central")
    RoutingRuleFactory(name="Central", region="Central")
    policy = SlaPolicy.objects.create(position=1, name="Bad")
    SlaPolicy.objects.filter(pk=policy.pk).update(response_business_hours=hours)

    handoff = hand_off(ContactFactory(), now=MONDAY_10)

    assert handoff.sla_due_at == MONDAY_10 + dt.timedelta(hours=3)
    assert f"SLA policy {policy.pk} has an unusable response time" in caplog.text


@pytest.fixture
def two_teams():
    """Ann (UTC) and bob (New York) in region Central, each with a manager."""
    ann_boss = RepFactory(region="HQ", user=UserFactory(username="ann_boss"))
    bob_boss = RepFactory(region="HQ", user=UserFactory(username="bob_boss"))
    ann = RepFactory(
        region="Central", manager=ann_boss, user=UserFactory(username="ann")
    )
    bob = RepFactory(
        region="Central",
        manager=bob_boss,
        time_zone="America/New_York",
        user=UserFactory(username="bob"),
    )
    RoutingRuleFactory(name="Central", region="Central")
    SlaPolicy.objects.create(
        position=10, name="Default", response_business_hours=4, escalation_chain=CHAIN
    )
    return {"ann": ann, "bob": bob, "ann_boss": ann_boss, "bob_boss": bob_boss}


@pytest.mark.django_db
def test_catch_up_tells_the_manager_of_the_rep_who_breached(
    two_teams, django_capture_on_commit_callbacks
):
    """After remind and reassign in one late sweep, the manager step is about
    the rep who breached and goes to that rep's manager, not the new rep's."""
    ann, bob = two_teams["ann"], two_teams["bob"]
    bob.capacity = 0  # ann gets the lead first
    bob.save(update_fields=["capacity"])
    handoff = hand_off(ContactFactory(), now=MONDAY_10)
    assert handoff.assignee == ann.user
    bob.capacity = 10
    bob.save(update_fields=["capacity"])
    mail.outbox.clear()

    # when one sweep runs a week late
    with django_capture_on_commit_callbacks(execute=True):
        enforce_handoff_slas(now=FAR_LATER)

    # then the lead is with bob, and ann's manager hears about ann
    handoff.refresh_from_db()
    assert handoff.assignee == bob.user
    remind, reassign, notify = handoff.escalations.order_by("level")
    assert {remind.from_user, reassign.from_user, notify.from_user} == {ann.user}
    assert notify.to_user == two_teams["ann_boss"].user
    assert handoff.escalated_to == two_teams["ann_boss"].user
    manager_task = handoff.tasks.get(type=Task.Type.ESCALATION)
    assert manager_task.assignee == two_teams["ann_boss"].user
    assert "ann has not answered" in manager_task.title
    manager_mail = mail.outbox[-1]
    assert manager_mail.to == [two_teams["ann_boss"].user.email]
    assert manager_mail.subject.endswith("to ann")
    assert "2025-03-03 14:00 UTC" in manager_mail.body


@pytest.mark.django_db
def test_steps_after_a_reassignment_wait_in_the_breached_reps_hours(two_teams):
    """Ann (UTC) breached at 14:00: her manager step is due 4 of her working
    hours later (Tuesday 10:00 UTC), whoever holds the lead by then."""
    bob = two_teams["bob"]
    bob.capacity = 0
    bob.save(update_fields=["capacity"])
    handoff = hand_off(ContactFactory(), now=MONDAY_10)
    bob.capacity = 10
    bob.save(update_fields=["capacity"])

    # remind at 14:00 and reassign at 16:00 to bob in New York
    enforce_handoff_slas(now=dt.datetime(2025, 3, 3, 16, 1, tzinfo=dt.UTC))
    handoff.refresh_from_db()
    assert handoff.assignee == bob.user

    def sweep(hour):
        now = dt.datetime(2025, 3, 4, hour, 1, tzinfo=dt.UTC)
        return [a for _, _, a in enforce_handoff_slas(now=now).steps]

    # ann's calendar says Tuesday 10:00 UTC; bob's would say Tuesday 15:00 UTC
    assert sweep(9) == []
    assert sweep(10) == ["notify_manager"]


@pytest.mark.django_db
def test_the_new_rep_gets_a_fresh_sla_that_can_breach_again(two_teams):
    """Reassignment starts a new round: once the first round's chain is done
    the handoff is pending under bob's deadline, and bob's breach escalates
    through the whole chain again, with levels counting on."""
    ann, bob = two_teams["ann"], two_teams["bob"]
    bob.capacity = 0
    bob.save(update_fields=["capacity"])
    handoff = hand_off(ContactFactory(), now=MONDAY_10)
    bob.capacity = 10
    bob.save(update_fields=["capacity"])

    # when the first round runs in one late sweep
    enforce_handoff_slas(now=FAR_LATER)

    # then bob holds a pending handoff with his own deadline
    handoff.refresh_from_db()
    assert handoff.assignee == bob.user
    assert handoff.status == Handoff.Status.PENDING
    assert handoff.sla_due_at > FAR_LATER

    # when bob lets his deadline pass too
    later = handoff.sla_due_at + dt.timedelta(days=7)
    second = enforce_handoff_slas(now=later)

    # then his breach runs the chain again, for bob
    assert second.breached == 1
    assert [(level, a) for _, level, a in second.steps] == [
        (4, "remind"),
        (5, "reassign"),
        (6, "notify_manager"),
    ]
    round_two = list(handoff.escalations.filter(level__gt=3).order_by("level"))
    assert {e.from_user for e in round_two} == {bob.user}
    assert round_two[1].to_user == ann.user
    assert round_two[2].to_user == two_teams["bob_boss"].user
    handoff.refresh_from_db()
    assert (handoff.assignee, handoff.status) == (ann.user, Handoff.Status.PENDING)
    assert handoff.escalation_level == 6
    # and nothing more happens until ann's own deadline
    assert enforce_handoff_slas(now=later + dt.timedelta(minutes=1)).steps == []


@pytest.mark.django_db
def test_a_failed_reassignment_keeps_the_breach_open(team):
    """With nobody else free the round ends breached and escalates no more."""
    handoff = hand_off(ContactFactory(), now=MONDAY_10)
    other = team["bob"] if handoff.assignee == team["ann"].user else team["ann"]
    other.is_active = False
    other.save(update_fields=["is_active"])

    enforce_handoff_slas(now=FAR_LATER)
    again = enforce_handoff_slas(now=FAR_LATER + dt.timedelta(days=30))

    handoff.refresh_from_db()
    assert handoff.status == Handoff.Status.BREACHED
    assert again.steps == []
    assert handoff.escalations.count() == 3
