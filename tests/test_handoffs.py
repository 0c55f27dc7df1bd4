"""Handoffs: routing with context, SLA breaches escalated once, decisions."""

import datetime as dt

import pytest
from django.core import mail

from crm.models import LifecycleStage
from nurture.models import Enrollment, Handoff, Task, Touch
from nurture.services.handoffs import (
    RejectReason,
    accept_handoff,
    enforce_handoff_slas,
    hand_off,
    hand_off_waiting_leads,
    reject_handoff,
)
from tests.factories import (
    AccountFactory,
    CadenceFactory,
    ContactFactory,
    EngagementEventFactory,
    EnrollmentFactory,
    RepFactory,
    RoutingRuleFactory,
    TaskFactory,
    TouchFactory,
    UserFactory,
)

pytestmark = pytest.mark.django_db

NOW = dt.datetime(2025, 3, 3, 10, 0, tzinfo=dt.UTC)


@pytest.fixture
def team():
    """One Central rep with a manager, reached by a catch-all rule."""
    manager = RepFactory(region="Central", user=UserFactory(username="boss"))
    rep = RepFactory(
        region="Central", manager=manager, user=UserFactory(username="ann")
    )
    RoutingRuleFactory(name="Everyone", region="Central")
    return rep


def test_hand_off_assigns_owner_sla_and_follow_up(team, settings):
    """The routed rep owns the lead, with a follow-up due at the SLA."""
    settings.NURTURE_HANDOFF_SLA_HOURS = 4
    contact = ContactFactory(lifecycle_stage=LifecycleStage.MQL)

    handoff = hand_off(contact, now=NOW)

    assert handoff.assignee == team.user
    assert handoff.sla_due_at == NOW + dt.timedelta(hours=4)
    assert handoff.routing_rule.name == "Everyone"
    assert "Everyone" in handoff.routing_reason
    contact.refresh_from_db()
    assert contact.owner == team.user
    task = Task.objects.get(handoff=handoff)
    assert task.type == Task.Type.FOLLOW_UP
    assert task.assignee == team.user
    assert task.due_at == handoff.sla_due_at
    team.refresh_from_db()
    assert team.last_assigned_at == NOW


def test_hand_off_snapshots_context_without_the_held_out_outcome(team):
    """The context carries score, events, touches, tasks, account; no truth."""
    contact = ContactFactory(
        account=AccountFactory(name="Acme"),
        known_converted=True,
        fit_score=30,
        total_score=70,
        intent_score=40,
        intent_scored_at=NOW,
        score_explanation=[{"rule": "Demo", "kind": "intent", "points": 40}],
    )
    for hours in range(12):
        EngagementEventFactory(
            contact=contact,
            type="page_view",
            occurred_at=NOW - dt.timedelta(hours=hours),
        )
    enrollment = EnrollmentFactory(contact=contact)
    TouchFactory(enrollment=enrollment, outcome=Touch.Outcome.OPENED, sent_at=NOW)
    TaskFactory(contact=contact, title="Call about pricing")

    context = hand_off(contact, now=NOW).context

    assert context["score"]["total"] == 70
    assert context["score"]["intent"] == 40
    assert context["score"]["explanation"][0]["rule"] == "Demo"
    assert context["account"] == "Acme"
    assert len(context["events"]) == 10
    assert context["events"][0]["occurred_at"] == NOW.isoformat()
    assert [t["outcome"] for t in context["touches"]] == ["opened"]
    assert [t["title"] for t in context["open_tasks"]] == ["Call about pricing"]
    assert "known_converted" not in str(context)


def test_hand_off_exits_cadences_that_exit_on_handoff(team):
    """Nurture stops where the cadence says so, and only there."""
    contact = ContactFactory()
    stopping = EnrollmentFactory(contact=contact, cadence=CadenceFactory())
    staying = EnrollmentFactory(
        contact=contact, cadence=CadenceFactory(exit_on_handoff=False)
    )

    hand_off(contact, now=NOW)

    stopping.refresh_from_db()
    staying.refresh_from_db()
    assert stopping.state == Enrollment.State.EXITED
    assert stopping.exit_reason == Enrollment.ExitReason.HANDOFF
    assert staying.state == Enrollment.State.ACTIVE


def test_hand_off_emails_the_rep_after_commit(
    team, django_capture_on_commit_callbacks, settings
):
    """The rep gets one email with a link to the handoff in the admin."""
    settings.NURTURE_SITE_URL = "http://crm.test"
    contact = ContactFactory()

    with django_capture_on_commit_callbacks(execute=True):
        handoff = hand_off(contact, now=NOW)

    assert len(mail.outbox) == 1
    message = mail.outbox[0]
    assert message.to == [team.user.email]
    assert f"http://crm.test/admin/nurture/handoff/{handoff.pk}/change/" in (
        message.body
    )
    assert contact.email not in message.body


def test_second_hand_off_returns_the_open_one(team):
    """At most one open handoff per contact: a repeat returns the first."""
    contact = ContactFactory()

    first = hand_off(contact, now=NOW)
    again = hand_off(contact, now=NOW + dt.timedelta(minutes=5))

    assert again == first
    assert Handoff.objects.filter(contact=contact).count() == 1
    assert Task.objects.filter(contact=contact).count() == 1


def test_hand_off_without_a_free_rep_returns_none():
    """No matching rule or rep means no handoff and no owner."""
    contact = ContactFactory()

    assert hand_off(contact, now=NOW) is None
    contact.refresh_from_db()
    assert contact.owner is None


def test_sla_breach_is_flagged_once_and_reminds_the_rep(
    team, django_capture_on_commit_callbacks
):
    """Two sweeps just after the deadline flag the breach and remind once."""
    handoff = hand_off(ContactFactory(), now=NOW)
    later = handoff.sla_due_at + dt.timedelta(minutes=1)

    # when the sweep runs at the deadline nothing happens
    assert enforce_handoff_slas(now=handoff.sla_due_at).breached == 0
    # when it runs twice after the deadline
    with django_capture_on_commit_callbacks(execute=True):
        first = enforce_handoff_slas(now=later)
        second = enforce_handoff_slas(now=later + dt.timedelta(minutes=1))

    # then one breach and one reminder; the manager's turn has not come yet
    assert (first.breached, second.breached) == (1, 0)
    assert [action for _, _, action in first.steps + second.steps] == ["remind"]
    handoff.refresh_from_db()
    assert handoff.status == Handoff.Status.BREACHED
    assert handoff.breached_at == handoff.sla_due_at
    assert handoff.escalated_to is None
    assert [m.to for m in mail.outbox] == [[team.user.email]]


def test_breached_handoff_without_manager_is_still_flagged():
    """A rep without a manager: the breach is recorded, nobody escalated."""
    RoutingRuleFactory(region="Central")
    RepFactory(region="Central")
    handoff = hand_off(ContactFactory(), now=NOW)

    assert enforce_handoff_slas(now=NOW + dt.timedelta(days=1)).breached == 1

    handoff.refresh_from_db()
    assert handoff.status == Handoff.Status.BREACHED
    assert handoff.escalated_to is None
    assert not Task.objects.filter(type=Task.Type.ESCALATION).exists()


def test_breached_handoff_can_still_be_accepted(team):
    """A late rep may still accept: the contact becomes an SQL."""
    contact = ContactFactory(lifecycle_stage=LifecycleStage.MQL)
    handoff = hand_off(contact, now=NOW)
    enforce_handoff_slas(now=NOW + dt.timedelta(days=1))

    accepted = accept_handoff(handoff, now=NOW + dt.timedelta(days=2))

    assert accepted.status == Handoff.Status.ACCEPTED
    contact.refresh_from_db()
    assert contact.lifecycle_stage == LifecycleStage.SQL


def test_breached_handoff_can_still_be_rejected(team):
    """A late rep may still reject: "not now" recycles the contact."""
    contact = ContactFactory(lifecycle_stage=LifecycleStage.MQL)
    handoff = hand_off(contact, now=NOW)
    enforce_handoff_slas(now=NOW + dt.timedelta(days=1))

    rejected = reject_handoff(
        handoff, reason=RejectReason.NOT_NOW, now=NOW + dt.timedelta(days=2)
    )

    assert rejected.status == Handoff.Status.REJECTED
    contact.refresh_from_db()
    assert contact.lifecycle_stage == LifecycleStage.RECYCLED


def test_waiting_mql_is_handed_off_once_a_rep_has_room(team):
    """An MQL that found every rep full gets its handoff when capacity frees."""
    # Given a rep with room for one handoff, and two MQLs
    team.capacity = 1
    team.save(update_fields=["capacity"])
    first = ContactFactory(lifecycle_stage=LifecycleStage.MQL, mql_at=NOW)
    second = ContactFactory(lifecycle_stage=LifecycleStage.MQL, mql_at=NOW)
    taken = hand_off(first, now=NOW)
    assert hand_off(second, now=NOW) is None

    # When the sweep runs while the rep is still full, nothing changes
    assert hand_off_waiting_leads(now=NOW) == 0
    assert not Handoff.objects.filter(contact=second).exists()

    # Then, once the rep accepts the first lead, the second is handed off
    accept_handoff(taken, now=NOW + dt.timedelta(hours=1))
    assert hand_off_waiting_leads(now=NOW + dt.timedelta(hours=2)) == 1
    waiting = Handoff.objects.get(contact=second)
    assert waiting.assignee == team.user
    assert waiting.created_at == NOW + dt.timedelta(hours=2)


def test_waiting_sweep_with_a_full_team_costs_one_query(
    team, django_assert_num_queries
):
    """A full team is detected up front, without trying each waiting lead."""
    team.capacity = 0
    team.save(update_fields=["capacity"])
    ContactFactory.create_batch(5, lifecycle_stage=LifecycleStage.MQL, mql_at=NOW)

    with django_assert_num_queries(1):
        assert hand_off_waiting_leads(now=NOW) == 0


@pytest.mark.parametrize("decide", ["accept", "reject"])
def test_deciding_a_handoff_closes_its_follow_up_task(team, decide):
    """The rep's follow-up leaves the queue once the handoff is decided."""
    contact = ContactFactory(lifecycle_stage=LifecycleStage.MQL)
    handoff = hand_off(contact, now=NOW)
    later = NOW + dt.timedelta(hours=1)

    if decide == "accept":
        accept_handoff(handoff, now=later)
    else:
        reject_handoff(handoff, reason=RejectReason.NOT_NOW, now=later)

    task = Task.objects.get(handoff=handoff)
    assert task.status == Task.Status.DONE
    assert task.completed_at == later


def test_waiting_lead_whose_region_is_full_is_not_tried(
    django_assert_max_num_queries,
):
    """Room in another region does not make the sweep try a lead it can't place."""
    # Given Mumbai leads go to West only, West is full and East has room
    RepFactory(region="West", capacity=0)
    RepFactory(region="East", capacity=5)
    RoutingRuleFactory(field="city", values="Mumbai", region="West")
    ContactFactory.create_batch(
        3, city="Mumbai", lifecycle_stage=LifecycleStage.MQL, mql_at=NOW
    )

    # When the sweep runs, it routes in memory and attempts no handoff
    with django_assert_max_num_queries(5):
        handed = hand_off_waiting_leads(now=NOW)

    # Then nothing is handed off and the leads keep waiting
    assert handed == 0
    assert not Handoff.objects.exists()


def test_context_lists_content_touch_outcomes_and_the_accounts_open_handoffs(team):
    """Downloads, opens and clicks, and colleagues' open handoffs reach the rep."""
    acme = AccountFactory(name="Acme", industry="software")
    colleague = ContactFactory(account=acme, last_name="Colleague")
    hand_off(colleague, now=NOW)
    contact = ContactFactory(account=acme, attributes={"product": "analytics"})
    EngagementEventFactory(
        contact=contact,
        type="content_download",
        occurred_at=NOW,
        properties={"title": "Buyer's guide"},
    )
    TouchFactory(
        enrollment=EnrollmentFactory(contact=contact),
        sent_at=NOW,
        opened_at=NOW,
        clicked_at=NOW,
    )

    context = hand_off(contact, now=NOW).context

    assert [c["title"] for c in context["content"]] == ["Buyer's guide"]
    (touch,) = context["touches"]
    assert (touch["opened_at"], touch["clicked_at"]) == (NOW.isoformat(),) * 2
    assert touch["replied_at"] is None
    assert context["account_attributes"]["industry"] == "software"
    assert context["enrichment"] == {"product": "analytics"}
    (other,) = context["account_open_handoffs"]
    assert other["contact"] == str(colleague)
    assert "@" not in str(context)


def test_reassign_handoff_refuses_a_rep_and_a_lone_team(team):
    """Only a manager may reassign, and only when another rep is free."""
    from nurture.services.errors import NurtureError
    from nurture.services.handoffs import reassign_handoff

    handoff = hand_off(ContactFactory(), now=NOW)
    rep_user = handoff.assignee

    with pytest.raises(NurtureError, match="only a manager"):
        reassign_handoff(handoff, now=NOW, actor=rep_user)
    with pytest.raises(NurtureError, match="no other rep is free"):
        reassign_handoff(handoff, now=NOW, actor=team.manager.user)

    handoff.refresh_from_db()
    assert handoff.assignee == rep_user
