"""Several scoring models at once: per-model scores, caps, negative rules."""

import datetime as dt

import pytest

from crm.models import Contact
from nurture.models import ContactScore, ScoringRule
from nurture.services.scoring import (
    compare,
    current_intent,
    decay_scores,
    employee_band,
    rescore_new_events,
    score_contacts,
)
from tests.factories import (
    AccountFactory,
    ContactFactory,
    EngagementEventFactory,
    ScoringModelFactory,
    ScoringRuleFactory,
)

pytestmark = pytest.mark.django_db

NOW = dt.datetime(2025, 3, 3, 10, 0, tzinfo=dt.UTC)
Op = ScoringRule.Operator
Intent = ScoringRule.Kind.INTENT


def test_each_active_model_keeps_its_own_score_and_default_is_mirrored():
    """Two models score the same event differently; the default shows on contacts."""
    default = ScoringModelFactory(mql_threshold=1000)
    product = ScoringModelFactory(name="Product B", is_default=False)
    retired = ScoringModelFactory(name="Old", is_default=False, is_active=False)
    for model, points in ((default, 10), (product, 30), (retired, 99)):
        ScoringRuleFactory(
            model=model, kind=Intent, event_type="pricing_visit", points=points
        )
    contact = ContactFactory()
    EngagementEventFactory(contact=contact, type="pricing_visit", occurred_at=NOW)

    rescore_new_events(now=NOW)

    scores = dict(
        ContactScore.objects.filter(contact=contact).values_list(
            "model__name", "total_score"
        )
    )
    assert scores == {"Default": 10, "Product B": 30}
    contact.refresh_from_db()
    assert contact.total_score == 10
    assert contact.score_explanation[0]["points"] == 10


def test_rule_cap_limits_points_per_fixed_period():
    """A capped rule counts at most max_points per period, then opens a new one."""
    model = ScoringModelFactory(mql_threshold=1000, intent_half_life_days=10_000)
    ScoringRuleFactory(
        model=model,
        kind=Intent,
        event_type="page_view",
        points=4,
        max_points=10,
        cap_period_days=7,
    )
    contact = ContactFactory()

    # given five views on day one: 4 + 4 + 2 count, the rest hit the cap
    EngagementEventFactory.create_batch(5, contact=contact, occurred_at=NOW)
    rescore_new_events(now=NOW)
    assert Contact.objects.get(pk=contact.pk).total_score == 10

    # when a view lands inside the period it adds nothing
    EngagementEventFactory(contact=contact, occurred_at=NOW + dt.timedelta(days=6))
    rescore_new_events(now=NOW + dt.timedelta(days=6))
    assert Contact.objects.get(pk=contact.pk).total_score == 10

    # then a view after the period counts again
    later = NOW + dt.timedelta(days=8)
    EngagementEventFactory(contact=contact, occurred_at=later)
    rescore_new_events(now=later)
    assert Contact.objects.get(pk=contact.pk).total_score == 14


def test_negative_rules_for_competitors_students_and_unsubscribes():
    """Competitor domains, student addresses and unsubscribes take points off."""
    model = ScoringModelFactory(mql_threshold=1000)
    ScoringRuleFactory(
        model=model,
        name="Competitor",
        field="email_domain",
        operator=Op.IN,
        value="rival.com, other-rival.io",
        points=-50,
    )
    ScoringRuleFactory(
        model=model,
        name="Student",
        field="email_domain",
        operator=Op.CONTAINS,
        value=".edu,.ac.uk",
        points=-20,
    )
    ScoringRuleFactory(
        model=model,
        name="Unsubscribed",
        kind=Intent,
        event_type="unsubscribe",
        points=-30,
    )
    rival = ContactFactory(email="ann@Rival.com")
    student = ContactFactory(email="bo@cs.stanford.edu")
    leaver = ContactFactory(email="cy@example.com")
    EngagementEventFactory(contact=leaver, type="unsubscribe", occurred_at=NOW)

    score_contacts([rival.pk, student.pk], now=NOW)
    rescore_new_events(now=NOW)

    totals = dict(
        Contact.objects.filter(pk__in=[rival.pk, student.pk, leaver.pk]).values_list(
            "pk", "total_score"
        )
    )
    assert totals == {rival.pk: -50, student.pk: -20, leaver.pk: -30}


def test_fit_rules_on_employee_band_technographics_and_title_keywords():
    """Band, technology list and any-of title keywords each match as documented."""
    model = ScoringModelFactory(mql_threshold=1000)
    ScoringRuleFactory(
        model=model,
        field="account__employee_band",
        operator=Op.IN,
        value="201-1000,1001-5000",
        points=10,
    )
    ScoringRuleFactory(
        model=model,
        field="account__technographics",
        operator=Op.CONTAINS,
        value="salesforce",
        points=5,
    )
    ScoringRuleFactory(
        model=model,
        field="title",
        operator=Op.CONTAINS,
        value="head of, director, vp",
        points=7,
    )
    account = AccountFactory(employee_count=350, technographics=["Salesforce CRM"])
    match = ContactFactory(account=account, title="Director of Sales")
    miss = ContactFactory(account=AccountFactory(employee_count=12), title="Intern")

    score_contacts([match.pk, miss.pk], now=NOW)

    assert Contact.objects.get(pk=match.pk).fit_score == 22
    assert Contact.objects.get(pk=miss.pk).fit_score == 0


@pytest.mark.parametrize(
    ("count", "band"),
    [(None, ""), (1, "1-10"), (50, "11-50"), (1000, "201-1000"), (9000, "5001+")],
)
def test_employee_bands(count, band):
    """Head counts fall into the documented bands, edges inclusive."""
    assert employee_band(count) == band


def test_lists_match_when_any_item_matches():
    """A technographics list matches a rule when one of its items does."""
    assert compare(Op.IN, ["HubSpot", "Slack"], "slack,zoom")
    assert not compare(Op.IN, ["HubSpot"], "slack")
    assert compare(Op.IS_BLANK, [], "")


def test_current_intent_reads_a_per_model_score_decayed():
    """A ContactScore's intent read later is decayed by its model's half-life."""
    model = ScoringModelFactory(mql_threshold=1000, intent_half_life_days=5)
    ScoringRuleFactory(model=model, kind=Intent, event_type="page_view", points=8)
    contact = ContactFactory()
    EngagementEventFactory(contact=contact, occurred_at=NOW)
    rescore_new_events(now=NOW)

    score = ContactScore.objects.select_related("model").get(contact=contact)
    assert current_intent(score, now=NOW + dt.timedelta(days=5)) == pytest.approx(4)


def test_decay_task_persists_decayed_intent_in_constant_queries(
    django_assert_num_queries,
):
    """Old stored intent is rewritten decayed; totals follow on the contacts."""
    model = ScoringModelFactory(mql_threshold=1000, intent_half_life_days=10)
    ScoringRuleFactory(model=model, kind=Intent, event_type="page_view", points=20)
    contacts = ContactFactory.create_batch(3)
    for contact in contacts:
        EngagementEventFactory(contact=contact, occurred_at=NOW)
    rescore_new_events(now=NOW)
    later = NOW + dt.timedelta(days=10)

    # a read of due scores, one upsert, one mirror, the savepoint pair, the
    # empty next read, then the account pass (default model, empty read)
    with django_assert_num_queries(8):
        assert decay_scores(now=later) == 3

    for contact in Contact.objects.filter(pk__in=[c.pk for c in contacts]):
        assert contact.intent_score == pytest.approx(10)
        assert contact.intent_scored_at == later
        assert contact.total_score == 10
    # nothing is due again until the persist interval has passed
    assert decay_scores(now=later + dt.timedelta(hours=1)) == 0
