"""Scoring: fit rules, decaying intent, incremental rescoring, MQL crossing."""

import datetime as dt

import pytest

from crm.models import Contact, EngagementEvent, LifecycleStage, StageChange
from nurture.models import ContactScore, Handoff, ScoringRule
from nurture.services.scoring import (
    compare,
    current_intent,
    rescore_new_events,
    score_contacts,
)
from tests.factories import (
    AccountFactory,
    ContactFactory,
    EngagementEventFactory,
    RepFactory,
    RoutingRuleFactory,
    ScoringModelFactory,
    ScoringRuleFactory,
)

pytestmark = pytest.mark.django_db

NOW = dt.datetime(2025, 3, 3, 10, 0, tzinfo=dt.UTC)
Op = ScoringRule.Operator
Intent = ScoringRule.Kind.INTENT


@pytest.mark.parametrize(
    ("operator", "actual", "expected", "result"),
    [
        (Op.EQUALS, "Google", "google", True),
        (Op.EQUALS, "Google", "goog", False),
        (Op.IN, "Working Professional", "student, working professional", True),
        (Op.IN, "Unemployed", "student, working professional", False),
        (Op.CONTAINS, "Finance Management", "finance", True),
        (Op.CONTAINS, "Marketing", "", False),
        (Op.GTE, 600, "600", True),
        (Op.GTE, 599.5, "600", False),
        (Op.GTE, None, "1", False),
        (Op.GTE, "n/a", "1", False),
        (Op.LTE, 3, "5", True),
        (Op.LTE, 6, "5", False),
        (Op.IS_SET, "Mumbai", "", True),
        (Op.IS_SET, "  ", "", False),
        (Op.IS_SET, None, "", False),
        (Op.IS_BLANK, "", "", True),
        (Op.IS_BLANK, "x", "", False),
        (Op.IS_TRUE, True, "", True),
        (Op.IS_TRUE, "Yes", "", True),
        (Op.IS_TRUE, False, "", False),
        (Op.IS_TRUE, "No", "", False),
    ],
)
def test_rule_operators(operator, actual, expected, result):
    """Each operator compares as documented: text ignoring case, numbers as such."""
    assert compare(operator, actual, expected) is result


def test_fit_rules_read_fields_attributes_and_account():
    """Fit adds the points of every rule the profile meets, and explains them."""
    model = ScoringModelFactory(mql_threshold=1000)
    ScoringRuleFactory(
        model=model,
        name="Working",
        field="occupation",
        operator=Op.EQUALS,
        value="working professional",
        points=20,
    )
    ScoringRuleFactory(
        model=model,
        name="Heard via ad",
        field="attributes.heard",
        operator=Op.IN,
        value="online search,advertisements",
        points=5,
    )
    ScoringRuleFactory(
        model=model,
        name="Software co",
        field="account__industry",
        operator=Op.EQUALS,
        value="software",
        points=7,
    )
    ScoringRuleFactory(
        model=model,
        name="Student",
        field="occupation",
        operator=Op.EQUALS,
        value="student",
        points=-10,
    )
    ScoringRuleFactory(
        model=model,
        name="Opted out",
        field="do_not_email",
        operator=Op.IS_TRUE,
        points=-15,
    )
    contact = ContactFactory(
        occupation="Working Professional",
        attributes={"heard": "Online Search"},
        account=AccountFactory(industry="Software"),
    )

    score_contacts([contact.pk], now=NOW)

    contact.refresh_from_db()
    assert contact.fit_score == 32
    assert contact.total_score == 32
    assert {hit["rule"] for hit in contact.score_explanation} == {
        "Working",
        "Heard via ad",
        "Software co",
    }


def test_intent_halves_after_one_half_life():
    """Intent read one half-life after scoring is half what was stored."""
    model = ScoringModelFactory(intent_half_life_days=30, mql_threshold=1000)
    ScoringRuleFactory(
        model=model, kind=Intent, name="Demo", event_type="demo_request", points=40
    )
    contact = ContactFactory()
    EngagementEventFactory(contact=contact, type="demo_request", occurred_at=NOW)

    rescore_new_events(now=NOW)
    contact.refresh_from_db()

    assert current_intent(contact, now=NOW) == pytest.approx(40)
    assert current_intent(contact, now=NOW + dt.timedelta(days=30)) == (
        pytest.approx(20)
    )
    assert current_intent(contact, now=NOW + dt.timedelta(days=60)) == (
        pytest.approx(10)
    )


def test_intent_rule_can_test_an_event_property():
    """A web_activity event scores only when its property meets the rule."""
    model = ScoringModelFactory(mql_threshold=1000)
    ScoringRuleFactory(
        model=model,
        kind=Intent,
        name="Long visit",
        event_type="web_activity",
        field="seconds_on_site",
        operator=Op.GTE,
        value="600",
        points=15,
    )
    long_stay, short_stay = ContactFactory(), ContactFactory()
    EngagementEventFactory(
        contact=long_stay,
        type="web_activity",
        occurred_at=NOW,
        properties={"seconds_on_site": 1200},
    )
    EngagementEventFactory(
        contact=short_stay,
        type="web_activity",
        occurred_at=NOW,
        properties={"seconds_on_site": 30},
    )

    assert rescore_new_events(now=NOW) == 2

    assert Contact.objects.get(pk=long_stay.pk).intent_score == pytest.approx(15)
    assert Contact.objects.get(pk=short_stay.pk).intent_score == 0


def test_rescoring_is_incremental_and_never_recounts_an_event():
    """A second run adds only the new event onto the decayed stored intent."""
    model = ScoringModelFactory(intent_half_life_days=10, mql_threshold=1000)
    ScoringRuleFactory(
        model=model, kind=Intent, name="Open", event_type="email_open", points=8
    )
    contact = ContactFactory()
    first = EngagementEventFactory(contact=contact, type="email_open", occurred_at=NOW)

    # given one event scored now
    assert rescore_new_events(now=NOW) == 1
    # when nothing new arrives, nothing is rescored
    assert rescore_new_events(now=NOW + dt.timedelta(days=1)) == 0
    # when a new event arrives ten days later
    later = NOW + dt.timedelta(days=10)
    EngagementEventFactory(contact=contact, type="email_open", occurred_at=later)
    assert rescore_new_events(now=later) == 1

    # then the old event counts once, at half weight, and the new one fully
    contact.refresh_from_db()
    assert contact.intent_score == pytest.approx(4 + 8)
    assert contact.total_score == 12
    first.refresh_from_db()
    assert first.scored_at == NOW
    assert not EngagementEvent.objects.unscored().exists()


def test_rescoring_respects_batch_size_in_id_order():
    """Only batch_size events are taken per call, oldest id first."""
    model = ScoringModelFactory(mql_threshold=1000)
    ScoringRuleFactory(
        model=model, kind=Intent, name="View", event_type="page_view", points=1
    )
    events = EngagementEventFactory.create_batch(5, occurred_at=NOW)

    assert rescore_new_events(now=NOW, batch_size=3) == 3

    scored = set(
        EngagementEvent.objects.filter(scored_at=NOW).values_list("pk", flat=True)
    )
    assert scored == {e.pk for e in events[:3]}


def test_explanation_sums_each_rules_hits_on_one_line():
    """However many events a contact has, a rule explains itself once.

    The line gives the points the rule counted, its number of hits and the
    time of the latest, across batches; lines run oldest hit first.
    """
    model = ScoringModelFactory(mql_threshold=10_000)
    ScoringRuleFactory(
        model=model, kind=Intent, name="View", event_type="page_view", points=1
    )
    ScoringRuleFactory(
        model=model, kind=Intent, name="Open", event_type="email_open", points=2
    )
    contact = ContactFactory()
    EngagementEventFactory(
        contact=contact, type="email_open", occurred_at=NOW - dt.timedelta(hours=5)
    )
    EngagementEventFactory.create_batch(25, contact=contact, occurred_at=NOW)
    rescore_new_events(now=NOW)
    later = NOW + dt.timedelta(hours=1)
    EngagementEventFactory.create_batch(5, contact=contact, occurred_at=later)
    rescore_new_events(now=later)

    contact.refresh_from_db()
    assert contact.score_explanation == [
        {
            "rule": "Open",
            "kind": "intent",
            "points": 2,
            "hits": 1,
            "at": (NOW - dt.timedelta(hours=5)).isoformat(),
        },
        {
            "rule": "View",
            "kind": "intent",
            "points": 30,
            "hits": 30,
            "at": later.isoformat(),
        },
    ]
    assert contact.intent_score == pytest.approx(32, abs=0.1)


def test_explanation_stored_one_line_per_hit_merges_on_rescoring():
    """Scores explained hit by hit (the earlier form) fold into rule lines."""
    model = ScoringModelFactory(mql_threshold=10_000)
    ScoringRuleFactory(
        model=model, kind=Intent, name="View", event_type="page_view", points=1
    )
    contact = ContactFactory()
    EngagementEventFactory(contact=contact, occurred_at=NOW)
    rescore_new_events(now=NOW)
    old_hit = {"rule": "View", "kind": "intent", "points": 1, "at": NOW.isoformat()}
    ContactScore.objects.filter(contact=contact).update(explanation=[old_hit] * 3)
    later = NOW + dt.timedelta(minutes=5)
    EngagementEventFactory(contact=contact, occurred_at=later)

    rescore_new_events(now=later)

    score = ContactScore.objects.get(contact=contact)
    assert score.explanation == [
        {
            "rule": "View",
            "kind": "intent",
            "points": 4,
            "hits": 4,
            "at": later.isoformat(),
        }
    ]


@pytest.mark.parametrize("contacts", [2, 40])
def test_rescoring_query_count_is_constant(contacts, django_assert_num_queries):
    """A batch costs the same queries for 2 or 40 contacts under two models."""
    model = ScoringModelFactory(mql_threshold=10_000)
    product = ScoringModelFactory(
        name="Product B", is_default=False, mql_threshold=10_000
    )
    for scoring_model in (model, product):
        ScoringRuleFactory(
            model=scoring_model,
            field="country",
            operator=Op.EQUALS,
            value="india",
            points=5,
        )
        ScoringRuleFactory(
            model=scoring_model, kind=Intent, event_type="page_view", points=1
        )
    for contact in ContactFactory.create_batch(contacts, account=AccountFactory()):
        EngagementEventFactory.create_batch(3, contact=contact, occurred_at=NOW)

    # models, rules, events, contacts, their scores, one upsert of scores,
    # the default model's mirror, accounts, their contacts' intent, one
    # account update, marking the events, plus the savepoint pair around the
    # batch; nobody qualifies
    with django_assert_num_queries(13):
        assert rescore_new_events(now=NOW) == contacts * 3


def test_crossing_the_threshold_makes_an_mql_once_and_hands_off():
    """The first crossing moves the lead to MQL and hands it to its region."""
    model = ScoringModelFactory(mql_threshold=50)
    ScoringRuleFactory(
        model=model, kind=Intent, name="Demo", event_type="demo_request", points=60
    )
    RoutingRuleFactory(position=1, field="city", values="Mumbai", region="West")
    RoutingRuleFactory(position=2, region="Central")
    RepFactory(region="Central")
    busy_west = RepFactory(region="West", capacity=10)
    idle_west = RepFactory(region="West", capacity=10)
    Handoff.objects.create(
        contact=ContactFactory(),
        assignee=busy_west.user,
        created_at=NOW,
        sla_due_at=NOW,
    )
    contact = ContactFactory(city="Mumbai")
    EngagementEventFactory(contact=contact, type="demo_request", occurred_at=NOW)

    # when the demo request is scored
    rescore_new_events(now=NOW)

    # then the contact is an MQL handed to the idle West rep
    contact.refresh_from_db()
    assert contact.lifecycle_stage == LifecycleStage.MQL
    assert contact.mql_at == NOW
    assert contact.owner == idle_west.user
    handoff = Handoff.objects.get(contact=contact)
    assert handoff.assignee == idle_west.user
    change = StageChange.objects.get(contact=contact)
    assert "60" in change.reason and "50" in change.reason

    # when another event lands, no second qualification happens
    later = NOW + dt.timedelta(hours=1)
    EngagementEventFactory(contact=contact, type="demo_request", occurred_at=later)
    rescore_new_events(now=later)
    assert StageChange.objects.filter(contact=contact).count() == 1
    assert Handoff.objects.filter(contact=contact).count() == 1


def test_contacts_past_the_lead_stage_are_not_requalified():
    """A customer scoring high does not become an MQL again."""
    model = ScoringModelFactory(mql_threshold=10)
    ScoringRuleFactory(
        model=model, kind=Intent, name="Demo", event_type="demo_request", points=60
    )
    customer = ContactFactory(lifecycle_stage=LifecycleStage.CUSTOMER)
    EngagementEventFactory(contact=customer, type="demo_request", occurred_at=NOW)

    rescore_new_events(now=NOW)

    customer.refresh_from_db()
    assert customer.lifecycle_stage == LifecycleStage.CUSTOMER
    assert customer.mql_at is None
    assert not Handoff.objects.exists()


def test_without_a_default_model_events_wait():
    """No default scoring model means events stay unscored for later."""
    EngagementEventFactory(occurred_at=NOW)

    assert rescore_new_events(now=NOW) == 0
    assert EngagementEvent.objects.unscored().count() == 1


MALFORMED_EXPLANATIONS = [
    5,
    "scored by hand",
    [{"kind": "intent", "rule": "View", "points": "3", "at": NOW.isoformat()}],
    [{"kind": "intent", "rule": "View", "points": None, "at": NOW.isoformat()}],
    [{"kind": "intent", "rule": "View", "points": 3, "at": None}],
    [{"kind": "intent", "rule": "View", "points": 3, "hits": None, "at": 7}],
    [{"kind": "intent", "rule": ["View"], "points": 3}],
    [{"kind": "intent"}],
]


@pytest.mark.parametrize("explanation", MALFORMED_EXPLANATIONS)
def test_a_malformed_stored_explanation_stops_no_scoring(explanation):
    """A score explained by hand in a shape scoring never writes is still
    scored, keeps its intent, and does not hold up other contacts' events."""
    model = ScoringModelFactory(mql_threshold=10_000)
    ScoringRuleFactory(
        model=model, kind=Intent, name="View", event_type="page_view", points=2
    )
    odd, other = ContactFactory(), ContactFactory()
    EngagementEventFactory(contact=odd, occurred_at=NOW)
    rescore_new_events(now=NOW)
    ContactScore.objects.filter(contact=odd).update(
        explanation=explanation, rule_points=explanation
    )
    Contact.objects.filter(pk=odd.pk).update(score_explanation=explanation)
    EngagementEventFactory(contact=odd, occurred_at=NOW)
    EngagementEventFactory(contact=other, occurred_at=NOW)

    assert rescore_new_events(now=NOW) == 2

    assert not EngagementEvent.objects.filter(scored_at__isnull=True).exists()
    odd.refresh_from_db()
    other.refresh_from_db()
    assert odd.intent_score == pytest.approx(4)
    assert other.intent_score == pytest.approx(2)
    view_lines = [line for line in odd.score_explanation if line["rule"] == "View"]
    assert len(view_lines) == 1 and view_lines[0]["kind"] == "intent"
    assert all(isinstance(line["points"], int) for line in odd.score_explanation)
