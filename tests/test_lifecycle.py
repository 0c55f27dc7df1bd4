"""Lifecycle: recycling, re-armed thresholds, hand-raises and stale deals."""

import datetime as dt

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from crm.models import Contact, LifecycleStage, Opportunity, StageChange
from crm.services import StageTransitionError, change_stage
from nurture.models import ContactScore, Enrollment, Handoff, ScoringRule
from nurture.services.handoffs import reject_handoff
from nurture.services.lifecycle import (
    flag_stale_opportunities,
    re_engage_opportunity_contacts,
)
from nurture.services.programme import ensure_default_programme
from nurture.services.scoring import qualify_contacts, rescore_new_events
from tests.concurrency import run_at_once
from tests.factories import (
    ContactFactory,
    EngagementEventFactory,
    HandoffFactory,
    OpportunityFactory,
    RepFactory,
    RoutingRuleFactory,
    ScoringModelFactory,
    ScoringRuleFactory,
)

pytestmark = pytest.mark.django_db

NOW = dt.datetime(2025, 3, 3, 10, 0, tzinfo=dt.UTC)
Intent = ScoringRule.Kind.INTENT
S = LifecycleStage


def _mql_with_handoff():
    contact = ContactFactory(lifecycle_stage=S.LEAD)
    change_stage(contact, S.MQL, now=NOW, reason="test")
    return contact, HandoffFactory(contact=contact, created_at=NOW)


def test_not_now_recycles_into_re_engagement_after_the_pause(settings):
    """A "not now" lead is recycled, re-armed and re-enrolled N days later."""
    settings.NURTURE_RECYCLE_AFTER_DAYS = 30
    ensure_default_programme()
    contact, handoff = _mql_with_handoff()

    # when the rep rejects the handoff as "not now"
    reject_handoff(handoff, reason="not_now", now=NOW)

    # then the lead is recycled with its history and thresholds re-armed
    contact.refresh_from_db()
    assert contact.lifecycle_stage == S.RECYCLED
    assert contact.mql_at is None
    stages = list(
        StageChange.objects.filter(contact=contact)
        .order_by("changed_at", "id")
        .values_list("to_stage", flat=True)
    )
    assert stages == [S.MQL, S.RECYCLED]
    # and nurture restarts in the re-engagement cadence after 30 days
    enrollment = Enrollment.objects.get(contact=contact)
    assert enrollment.cadence.name == "Re-engagement"
    assert enrollment.next_due_at >= NOW + dt.timedelta(days=30)


def test_bad_fit_disqualifies_without_re_enrolling():
    """A "bad fit" lead is disqualified, kept, and not put in any cadence."""
    ensure_default_programme()
    contact, handoff = _mql_with_handoff()

    reject_handoff(handoff, reason="bad_fit", now=NOW)

    contact.refresh_from_db()
    assert contact.lifecycle_stage == S.DISQUALIFIED
    assert not Enrollment.objects.filter(contact=contact).exists()
    assert StageChange.objects.filter(contact=contact).count() == 2


def test_disallowed_moves_are_refused_and_not_recorded():
    """A customer cannot jump back to lead; nothing is recorded."""
    contact = ContactFactory(lifecycle_stage=S.CUSTOMER)

    with pytest.raises(StageTransitionError):
        change_stage(contact, S.LEAD, now=NOW)

    assert not StageChange.objects.filter(contact=contact).exists()


def _scoring_setup(threshold=50):
    model = ScoringModelFactory(mql_threshold=threshold, intent_half_life_days=10)
    ScoringRuleFactory(
        model=model, kind=Intent, name="Call", event_type="call_connected", points=60
    )
    RoutingRuleFactory(position=1, region="Central")
    RepFactory(region="Central")
    return model


def test_mql_fires_once_and_re_arms_after_recycling():
    """Qualification fires on the first crossing only, and again once recycled."""
    _scoring_setup()
    contact = ContactFactory()
    EngagementEventFactory(contact=contact, type="call_connected", occurred_at=NOW)
    rescore_new_events(now=NOW)
    contact.refresh_from_db()
    assert contact.lifecycle_stage == S.MQL

    # given the lead is recycled and its intent decays below the threshold
    reject_handoff(Handoff.objects.get(contact=contact), reason="not_now", now=NOW)
    later = NOW + dt.timedelta(days=40)

    # when a new event lifts it over the threshold again
    EngagementEventFactory(contact=contact, type="call_connected", occurred_at=later)
    rescore_new_events(now=later)

    # then it qualifies a second time, with a new mql_at
    contact.refresh_from_db()
    assert contact.lifecycle_stage == S.MQL
    assert contact.mql_at == later
    assert StageChange.objects.filter(contact=contact, to_stage=S.MQL).count() == 2


@pytest.mark.parametrize(
    ("event_type", "properties", "qualifies"),
    [
        ("demo_request", {}, True),
        ("form_submit", {"form": "Pricing"}, True),
        ("form_submit", {"form": "newsletter"}, False),
        ("pricing_visit", {}, False),
    ],
)
def test_a_hand_raise_qualifies_whatever_the_score(event_type, properties, qualifies):
    """A demo request or pricing form makes an MQL even with no points."""
    _scoring_setup(threshold=10_000)
    contact = ContactFactory()
    EngagementEventFactory(
        contact=contact, type=event_type, properties=properties, occurred_at=NOW
    )

    rescore_new_events(now=NOW)

    contact.refresh_from_db()
    assert (contact.lifecycle_stage == S.MQL) is qualifies
    assert Handoff.objects.filter(contact=contact).exists() is qualifies
    if qualifies:
        change = StageChange.objects.get(contact=contact)
        assert change.reason == "raised a hand"


def test_sql_threshold_promotes_an_mql_once():
    """Crossing the SQL threshold moves an MQL to SQL, once."""
    model = _scoring_setup(threshold=50)
    model.sql_threshold = 100
    model.save()
    contact = ContactFactory()
    for day in (0, 1):
        at = NOW + dt.timedelta(hours=day)
        EngagementEventFactory(contact=contact, type="call_connected", occurred_at=at)
        rescore_new_events(now=at)

    contact.refresh_from_db()
    assert contact.lifecycle_stage == S.SQL
    assert contact.sql_at == NOW + dt.timedelta(hours=1)


def test_stale_open_opportunities_are_flagged_and_cleared(
    django_assert_num_queries,
):
    """Open deals idle for N days get stale_since; active or closed ones do not."""
    old = NOW - dt.timedelta(days=45)
    idle = OpportunityFactory(last_activity_at=old)
    idle_engaged = OpportunityFactory(engaged_at=old)
    recent = OpportunityFactory(last_activity_at=NOW - dt.timedelta(days=2))
    won = OpportunityFactory(stage=Opportunity.Stage.WON, last_activity_at=old)

    with django_assert_num_queries(2):
        assert flag_stale_opportunities(now=NOW, days=30) == 2

    flagged = set(
        Opportunity.objects.filter(stale_since=NOW).values_list("pk", flat=True)
    )
    assert flagged == {idle.pk, idle_engaged.pk}
    assert recent.pk not in flagged and won.pk not in flagged

    # when the idle deal sees activity, its flag goes on the next sweep
    Opportunity.objects.filter(pk=idle.pk).update(last_activity_at=NOW)
    flag_stale_opportunities(now=NOW + dt.timedelta(hours=1), days=30)
    idle.refresh_from_db()
    assert idle.stale_since is None


def test_stale_deal_contacts_join_the_re_engagement_cadence():
    """The re-engage action puts the deals' contacts in the cadence once."""
    ensure_default_programme()
    deals = OpportunityFactory.create_batch(2)

    assert re_engage_opportunity_contacts([d.pk for d in deals], now=NOW) == 2
    assert re_engage_opportunity_contacts([d.pk for d in deals], now=NOW) == 0
    assert set(Enrollment.objects.values_list("cadence__name", flat=True)) == {
        "Re-engagement"
    }


def test_admin_action_re_engages_stale_deals(admin_client):
    """The opportunity list filters stale deals and re-engages their contacts."""
    from django.urls import reverse

    ensure_default_programme()
    stale = OpportunityFactory(stale_since=NOW)
    url = reverse("admin:crm_opportunity_changelist")

    listing = admin_client.get(url, {"stale_since__isnull": "False"})
    response = admin_client.post(
        url,
        {"action": "re_engage_contacts", "_selected_action": [stale.pk]},
        follow=True,
    )

    assert list(listing.context["cl"].result_list) == [stale]
    assert response.status_code == 200
    enrollment = Enrollment.objects.get(contact=stale.contact)
    assert enrollment.cadence.name == "Re-engagement"


@pytest.mark.skipif(connection.vendor != "sqlite", reason="SQLite's query plans")
def test_qualifying_looks_contacts_up_by_id_not_by_walking_the_stage():
    """MQL and SQL checks read the crossing contacts by id.

    Under the contacts' default order (by score) SQLite chose the stage and
    score index and walked every lead in the stage for each scoring batch,
    so qualification slowed as the database grew.
    """
    model = _scoring_setup(threshold=50)
    model.sql_threshold = 100
    model.save()
    ContactFactory.create_batch(3)
    crossing = ContactFactory.create_batch(30)
    for contact in crossing:
        EngagementEventFactory.create_batch(
            2, contact=contact, type="call_connected", occurred_at=NOW
        )

    with CaptureQueriesContext(connection) as queries:
        rescore_new_events(now=NOW)

    assert {
        c.lifecycle_stage
        for c in Contact.objects.filter(pk__in=[c.pk for c in crossing])
    } == {S.SQL}
    stage_tests = (
        '"crm_contact"."lifecycle_stage" IN',
        '"crm_contact"."lifecycle_stage" = ',
    )
    stage_reads = [
        q["sql"]
        for q in queries.captured_queries
        if q["sql"].startswith("SELECT") and any(t in q["sql"] for t in stage_tests)
    ]
    assert len(stage_reads) == 2  # the MQL check, then the SQL check
    for sql in stage_reads:
        with connection.cursor() as cursor:
            cursor.execute("EXPLAIN QUERY PLAN " + sql)
            plan = [row[3] for row in cursor.fetchall()]
        contact_step = next(step for step in plan if " crm_contact " in step)
        assert "INTEGER PRIMARY KEY" in contact_step, plan


@pytest.mark.django_db(transaction=True)
def test_two_workers_qualifying_the_same_leads_make_each_an_mql_once():
    """A threshold crossing and a hand-raise seen by two scoring workers at
    once qualify each lead once: one stage change, one handoff."""
    if connection.vendor != "postgresql":
        pytest.skip("concurrent row locks need PostgreSQL")
    model = _scoring_setup(threshold=50)
    leads = ContactFactory.create_batch(40, total_score=80)
    ContactScore.objects.bulk_create(
        ContactScore(contact=lead, model=model, total_score=80) for lead in leads
    )
    ids = [lead.pk for lead in leads]

    run_at_once(
        lambda: qualify_contacts(ids, now=NOW, model=model),
        lambda: qualify_contacts(ids, now=NOW, hand_raise=True),
    )

    moves = StageChange.objects.filter(to_stage=S.MQL).values_list("contact_id")
    assert sorted(contact_id for (contact_id,) in moves) == sorted(ids)
    assert Handoff.objects.count() == len(ids)
