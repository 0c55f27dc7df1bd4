"""Batch qualification: many new MQLs handed off as one by one, in few queries."""

import datetime as dt
from collections import Counter

import pytest
from django.core import mail
from django.db import transaction

from crm.models import Contact, LifecycleStage, Rep, StageChange
from crm.services import StageTransitionError, change_stages
from nurture.models import (
    Enrollment,
    Handoff,
    RoutingRule,
    SlaPolicy,
    Task,
    Team,
    TeamMembership,
    Touch,
    WebhookDelivery,
    WebhookSubscription,
)
from nurture.services import handoffs
from nurture.services.handoffs import hand_off, hand_off_many
from nurture.services.scoring import qualify_contacts
from tests.factories import (
    AccountFactory,
    CadenceFactory,
    ContactFactory,
    EngagementEventFactory,
    EnrollmentFactory,
    HandoffFactory,
    RepFactory,
    RoutingRuleFactory,
    TaskFactory,
    TeamFactory,
    TeamMembershipFactory,
    TouchFactory,
    UserFactory,
)

pytestmark = pytest.mark.django_db

NOW = dt.datetime(2025, 3, 3, 10, 0, tzinfo=dt.UTC)


def round_robin_team(weights=(1, 1, 1), **rep_fields) -> tuple[Team, list[Rep]]:
    """A catch-all rule giving leads to a team by (weighted) round robin."""
    team = TeamFactory()
    reps = []
    for weight in weights:
        rep = RepFactory(capacity=1000, **rep_fields)
        TeamMembershipFactory(team=team, rep=rep, weight=weight)
        reps.append(rep)
    strategy = (
        RoutingRule.Strategy.WEIGHTED
        if len(set(weights)) > 1
        else RoutingRule.Strategy.ROUND_ROBIN
    )
    RoutingRuleFactory(
        match=RoutingRule.Match.ALWAYS, strategy=strategy, team=team, position=100
    )
    return team, reps


def a_lead(account=None) -> Contact:
    """A lead with history: events, a download, a touch, an open task."""
    contact = ContactFactory(
        account=account,
        fit_score=20,
        intent_score=40,
        intent_scored_at=NOW - dt.timedelta(days=3),
        total_score=60,
    )
    EngagementEventFactory(contact=contact, type="page_view", occurred_at=NOW)
    EngagementEventFactory(
        contact=contact,
        type="content_download",
        occurred_at=NOW - dt.timedelta(hours=1),
        properties={"title": "Pricing guide"},
    )
    enrollment = EnrollmentFactory(contact=contact)
    TouchFactory(enrollment=enrollment, outcome=Touch.Outcome.OPENED, sent_at=NOW)
    TaskFactory(contact=contact, title="Call back")
    return contact


@pytest.mark.parametrize("leads", [3, 30])
def test_qualifying_a_batch_costs_the_same_queries_for_3_or_30_leads(
    leads, django_assert_num_queries, django_capture_on_commit_callbacks
):
    """Stage changes, handoffs, context, tasks, exits, webhooks: fixed queries."""
    # Given a round-robin team, a webhook subscriber and leads with history
    # at two accounts
    round_robin_team()
    WebhookSubscription.objects.create(name="CRM", url="http://127.0.0.1:9/")
    accounts = [AccountFactory(), AccountFactory()]
    ids = [a_lead(accounts[n % 2]).pk for n in range(leads)]

    # When they all raise a hand in one scoring batch
    # default model, contacts, change_stages (2 savepoints, update, insert,
    # release), pending handoffs, savepoint, SLA policies, router (rules,
    # reps, team members, open handoffs, team lock and re-read), rep stamp,
    # counters (one per team member who got leads, one for the team),
    # context (default model, events, downloads, touches, tasks, account
    # handoffs), handoff insert, colleagues' contexts, owners per rep,
    # exits (cadences, update), tasks, subscriptions, deliveries, 2 releases
    with django_capture_on_commit_callbacks(execute=True):
        with django_assert_num_queries(39):
            assert qualify_contacts(ids, now=NOW, hand_raise=True) == leads

    # Then every lead is an MQL with a handoff, a follow-up and one email
    assert Handoff.objects.count() == leads
    assert StageChange.objects.filter(to_stage=LifecycleStage.MQL).count() == leads
    assert Task.objects.filter(type=Task.Type.FOLLOW_UP, handoff__isnull=False).count()
    assert WebhookDelivery.objects.filter(event="handoff.created").count() == leads
    assert len(mail.outbox) == leads


def _state() -> dict:
    """What hand-offs leave behind, with handoff ids left out."""
    handoffs = {}
    for handoff in Handoff.objects.order_by("contact_id"):
        context = handoff.context
        for entry in context.get("account_open_handoffs", []):
            entry["handoff_id"] = Handoff.objects.get(pk=entry["handoff_id"]).contact_id
        handoffs[handoff.contact_id] = (
            handoff.assignee_id,
            handoff.routing_rule_id,
            handoff.routing_reason,
            handoff.sla_policy_id,
            handoff.sla_due_at,
            handoff.created_at,
            handoff.status,
            context,
        )
    deliveries = sorted(
        (d.event, d.payload["contact_id"], d.payload["assignee_id"])
        for d in WebhookDelivery.objects.all()
    )
    return {
        "handoffs": handoffs,
        "tasks": sorted(
            Task.objects.values_list(
                "contact_id", "assignee_id", "type", "title", "instructions", "due_at"
            )
        ),
        "owners": dict(Contact.objects.values_list("pk", "owner_id")),
        "enrollments": sorted(
            Enrollment.objects.values_list("contact_id", "state", "exit_reason")
        ),
        "reps": sorted(Rep.objects.values_list("pk", "last_assigned_at")),
        "members": sorted(TeamMembership.objects.values_list("rep_id", "assigned")),
        "teams": sorted(Team.objects.values_list("pk", "assignments")),
        "deliveries": deliveries,
        "emails": sorted((m.subject, tuple(m.to)) for m in mail.outbox),
    }


def _run(way, contacts, capture) -> dict:
    """Hand the contacts off one way, note the outcome, then roll it back."""
    mail.outbox = []
    with transaction.atomic():
        with capture(execute=True):
            if way == "batch":
                results = hand_off_many(contacts, now=NOW)
            else:
                results = [hand_off(contact, now=NOW) for contact in contacts]
        state = _state()
        state["results"] = [h.contact_id if h else None for h in results]
        transaction.set_rollback(True)
    return state


def test_hand_off_many_leaves_what_hand_off_one_by_one_leaves(
    django_capture_on_commit_callbacks,
):
    """Assignees, reasons, SLAs, contexts, tasks, owners, exits all match."""
    # Given Pune leads go to two West reps in different zones, one busier,
    # everyone else to a round-robin team, and high scorers get a 2-hour SLA
    RoutingRuleFactory(field="city", values="Pune", region="West", position=1)
    busy = RepFactory(region="West", capacity=10, time_zone="Asia/Kolkata")
    RepFactory(region="West", capacity=10, time_zone="America/New_York")
    for _ in range(3):
        HandoffFactory(assignee=busy.user, created_at=NOW, contact=ContactFactory())
    round_robin_team(region="Team", time_zone="Europe/Berlin")
    SlaPolicy.objects.create(
        position=1, name="Hot", min_score=80, response_business_hours=2
    )
    WebhookSubscription.objects.create(name="CRM", url="http://127.0.0.1:9/")
    exits = CadenceFactory(exit_on_handoff=True)
    stays = CadenceFactory(exit_on_handoff=False)
    # and leads with history, some at one account that already has an open
    # handoff, and one already handed off
    acme = AccountFactory(name="Acme")
    HandoffFactory(
        assignee=UserFactory(), created_at=NOW, contact=ContactFactory(account=acme)
    )
    contacts = [a_lead(acme if n % 3 == 0 else None) for n in range(9)]
    for n, contact in enumerate(contacts):
        contact.city = "Pune" if n % 2 else "Delhi"
        contact.total_score = 90 if n % 4 == 0 else 60
        contact.save(update_fields=["city", "total_score"])
        EnrollmentFactory(contact=contact, cadence=exits if n % 2 else stays)
    already = ContactFactory()
    HandoffFactory(contact=already, assignee=UserFactory(), created_at=NOW)
    contacts.append(already)

    # When they are handed off in one batch, and (rolled back) one by one
    batch = _run("batch", contacts, django_capture_on_commit_callbacks)
    single = _run("single", contacts, django_capture_on_commit_callbacks)

    # Then both leave the same handoffs, tasks, owners, exits and counters
    assert batch == single
    assert batch["results"] == [c.pk for c in contacts]
    assert len(batch["emails"]) == 9
    assigned = Counter(batch["handoffs"][c.pk][0] for c in contacts[:9])
    # and the busier West rep gets only the fourth Pune lead, once the
    # other has caught up with its three open handoffs
    assert assigned[busy.user_id] == 1


def test_hand_off_many_keeps_round_robin_fair_across_batches():
    """A weighted team's members stay within one lead of their share."""
    # Given a 1:2:3 team whose first member already got two leads
    team, reps = round_robin_team(weights=(1, 2, 3))
    TeamMembership.objects.filter(team=team, rep=reps[0]).update(assigned=2)

    # When 34 leads arrive in two batches
    first = hand_off_many(ContactFactory.create_batch(16), now=NOW)
    second = hand_off_many(ContactFactory.create_batch(18), now=NOW)

    # Then the shares are 6, 12 and 18 of 36, counting the two given before
    got = Counter(h.assignee_id for h in first + second)
    assert [got[rep.user_id] for rep in reps] == [4, 12, 18]
    assigned = dict(TeamMembership.objects.values_list("rep_id", "assigned"))
    assert [assigned[rep.pk] for rep in reps] == [6, 12, 18]
    assert Team.objects.get(pk=team.pk).assignments == 34


def test_hand_off_many_respects_capacity_within_the_batch():
    """A rep with room for two gets two of a batch; the rest wait."""
    # Given the only rep has room for two open handoffs
    RoutingRuleFactory(region="Central")
    rep = RepFactory(region="Central", capacity=2)

    # When five leads are handed off together
    handoffs = hand_off_many(ContactFactory.create_batch(5), now=NOW)

    # Then two are the rep's and three wait without a handoff
    assert [h.assignee_id if h else None for h in handoffs] == [
        rep.user_id,
        rep.user_id,
        None,
        None,
        None,
    ]


def test_change_stages_moves_and_records_each_contact():
    """Each moved contact gets its stage, its first MQL time and its record."""
    # Given a lead, a recycled lead that qualified before, and an MQL
    lead = ContactFactory(lifecycle_stage=LifecycleStage.LEAD)
    again = ContactFactory(lifecycle_stage=LifecycleStage.RECYCLED)
    mql_before = NOW - dt.timedelta(days=9)
    already = ContactFactory(lifecycle_stage=LifecycleStage.MQL, mql_at=mql_before)

    # When all three move to MQL with a reason each
    changes = change_stages(
        [lead, again, already],
        LifecycleStage.MQL,
        now=NOW,
        reason=lambda contact: f"because {contact.pk}",
    )

    # Then the two that moved are recorded, and the MQL is left alone
    assert [(c.contact_id, c.from_stage, c.reason) for c in changes] == [
        (lead.pk, LifecycleStage.LEAD, f"because {lead.pk}"),
        (again.pk, LifecycleStage.RECYCLED, f"because {again.pk}"),
    ]
    assert StageChange.objects.count() == 2
    stages = dict(Contact.objects.values_list("pk", "lifecycle_stage"))
    assert set(stages.values()) == {LifecycleStage.MQL}
    assert Contact.objects.get(pk=lead.pk).mql_at == NOW
    assert Contact.objects.get(pk=already.pk).mql_at == mql_before


def test_change_stages_refuses_a_disallowed_move_before_writing():
    """One move the lifecycle forbids stops the batch; nothing is recorded."""
    lead = ContactFactory(lifecycle_stage=LifecycleStage.LEAD)
    customer = ContactFactory(lifecycle_stage=LifecycleStage.CUSTOMER)

    with pytest.raises(StageTransitionError):
        change_stages([lead, customer], LifecycleStage.MQL, now=NOW)

    assert not StageChange.objects.exists()
    assert Contact.objects.get(pk=lead.pk).lifecycle_stage == LifecycleStage.LEAD


def test_a_contact_handed_off_meanwhile_keeps_that_handoff(monkeypatch):
    """A batch that meets another worker's handoff is redone one by one."""
    # Given a rep, three leads, and another worker's handoff of the second
    # that the batch's first look at open handoffs does not see yet
    RoutingRuleFactory(region="Central")
    rep = RepFactory(region="Central", capacity=10)
    first, second, third = ContactFactory.create_batch(3)
    theirs = HandoffFactory(contact=second, assignee=rep.user, created_at=NOW)
    real_pending = Handoff.objects.pending
    looks = []

    def pending():
        looks.append(1)
        return Handoff.objects.none() if len(looks) == 1 else real_pending()

    monkeypatch.setattr(Handoff.objects, "pending", pending)

    # When the batch hands them off and its insert meets the constraint
    handoffs = hand_off_many([first, second, third], now=NOW)

    # Then the second keeps the other worker's handoff, the others get theirs
    assert handoffs[1] == theirs
    assert [h.contact for h in handoffs] == [first, second, third]
    assert Handoff.objects.count() == 3
    assert not Task.objects.filter(handoff__contact=second).exists()


def test_one_lead_failing_to_qualify_stops_no_other(monkeypatch, caplog):
    """When the batch fails, the leads are qualified one by one instead."""
    # Given a rep, three hand-raisers, and a handoff that fails for one
    RoutingRuleFactory(region="Central")
    RepFactory(region="Central", capacity=10)
    first, broken, third = ContactFactory.create_batch(3)
    real_hand_off_many = handoffs.hand_off_many

    def failing(contacts, **kwargs):
        if any(contact.pk == broken.pk for contact in contacts):
            raise RuntimeError("routing broke")
        return real_hand_off_many(contacts, **kwargs)

    monkeypatch.setattr(handoffs, "hand_off_many", failing)

    # When they qualify together
    ids = [first.pk, broken.pk, third.pk]
    qualified = qualify_contacts(ids, now=NOW, hand_raise=True)

    # Then the two others are MQLs with handoffs; the broken one is untouched
    assert qualified == 2
    moved = set(StageChange.objects.values_list("contact_id", flat=True))
    assert moved == {first.pk, third.pk}
    assert set(Handoff.objects.values_list("contact_id", flat=True)) == moved
    broken.refresh_from_db()
    assert broken.mql_at is None
    assert broken.lifecycle_stage != LifecycleStage.MQL
    assert "Qualification failed" in caplog.text
