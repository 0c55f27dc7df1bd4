"""Several scoring models at once: per-model scores, caps, negative rules."""

import datetime as dt
import math

import pytest
from django.urls import reverse

from crm.models import Contact
from nurture.models import ContactScore, RescoreJob, ScoringRule
from nurture.services.learning import set_use_learned
from nurture.services.scoring import (
    compare,
    current_intent,
    decay_scores,
    employee_band,
    rescore_new_events,
    run_rescore_batch,
    score_contacts,
)
from tests.api_support import make_manager, token_client
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


def learned_model(**fields):
    """A default model with rules and fitted weights, thresholds out of reach."""
    model = ScoringModelFactory(
        mql_threshold=1000,
        use_learned=True,
        learned_intercept=-2.0,
        learned_weights={
            "occupation=Student": -1.0,
            "event=content_download": 3.0,
            "visits>=5": 2.0,
        },
        **fields,
    )
    ScoringRuleFactory(
        model=model, name="Student", field="occupation", value="student", points=-5
    )
    ScoringRuleFactory(
        model=model,
        kind=Intent,
        name="Download",
        event_type="content_download",
        points=15,
    )
    return model


def learned_total(logit: float) -> int:
    return round(100 / (1 + math.exp(-logit)))


def test_a_learned_model_sets_the_total_and_explains_it():
    """With use_learned on, the learned weights set the total; fit and intent
    still come from the rules, and the explanation names the learned model
    and its strongest features."""
    model = learned_model()
    contact = ContactFactory(occupation="Student")
    EngagementEventFactory(contact=contact, type="content_download", occurred_at=NOW)

    rescore_new_events(now=NOW)

    score = ContactScore.objects.get(contact=contact, model=model)
    # intercept -2, student -1, download +3: logit 0, so 50 of 100
    assert score.total_score == learned_total(0.0) == 50
    assert (score.fit_score, round(score.intent_score)) == (-5, 15)
    learned = [line for line in score.explanation if line["kind"] == "learned"]
    assert learned[0]["rule"].startswith("Learned model set the total to 50 of 100")
    assert [f["feature"] for f in learned[0]["features"]] == [
        "Content download event recorded",
        "Occupation is Student",
    ]
    assert {line["rule"] for line in score.explanation} >= {"Student", "Download"}
    contact.refresh_from_db()
    assert contact.total_score == 50


def test_the_api_and_admin_show_a_learned_total_as_it_was_set(admin_client):
    """A learned total does not decay, so reads show it, not fit + intent."""
    model = learned_model(is_default=True)
    contact = ContactFactory(occupation="Student")
    EngagementEventFactory(contact=contact, type="content_download", occurred_at=NOW)
    rescore_new_events(now=NOW)
    api = token_client(make_manager())

    detail = api.get(f"/api/contacts/{contact.pk}/").json()

    assert detail["total_now"] == 50
    assert [s["total"] for s in detail["scores"] if s["model"] == model.name] == [50]
    page = admin_client.get(reverse("admin:crm_contact_change", args=[contact.pk]))
    assert "<td>50</td>" in page.content.decode().replace(" ", "")


def test_a_learned_total_folds_new_events_without_rereading_history(
    django_assert_num_queries,
):
    """Later batches add to the summary stored with the score: the learned
    total follows every event so far at the same query cost as rules."""
    model = learned_model()
    contact = ContactFactory(occupation="Engineer")
    EngagementEventFactory(contact=contact, type="content_download", occurred_at=NOW)
    rescore_new_events(now=NOW)
    assert ContactScore.objects.get(contact=contact).total_score == learned_total(1)

    # given web activity reaching five visits arrives later
    EngagementEventFactory(
        contact=contact,
        type="web_activity",
        properties={"visits": 6},
        occurred_at=NOW,
    )

    # when it is scored, no history is read: models, rules, events,
    # contacts, scores, upsert, mirror, marking, and the savepoint pair
    with django_assert_num_queries(10):
        rescore_new_events(now=NOW + dt.timedelta(hours=1))

    # then the total counts the earlier download and the visits
    score = ContactScore.objects.get(contact=contact, model=model)
    assert score.total_score == learned_total(-2 + 3 + 2)


def test_a_contact_first_scored_by_a_learned_model_counts_its_history():
    """A score with no event summary yet reads the contact's scored events
    once, so switching on never forgets what a lead already did."""
    learned_model()
    contact = ContactFactory(occupation="Engineer")
    EngagementEventFactory(
        contact=contact, type="content_download", occurred_at=NOW, scored_at=NOW
    )

    score_contacts([contact.pk], now=NOW)

    assert ContactScore.objects.get(contact=contact).total_score == learned_total(1)


def test_switching_the_learned_model_off_returns_to_the_rules():
    """Switching back queues a rescore, and the job scores by the rules."""
    model = learned_model()
    contact = ContactFactory(occupation="Student")
    EngagementEventFactory(contact=contact, type="content_download", occurred_at=NOW)
    rescore_new_events(now=NOW)
    assert ContactScore.objects.get(contact=contact).total_score == 50

    # when an operator switches to the rules
    set_use_learned(model, enabled=False, now=NOW)
    job = RescoreJob.objects.get(model=model)
    while run_rescore_batch(job.pk, now=NOW):
        pass

    # then the total is fit plus intent again, with no learned line
    score = ContactScore.objects.get(contact=contact, model=model)
    assert score.total_score == -5 + 15
    assert all(line["kind"] != "learned" for line in score.explanation)
    assert "_learned" not in score.rule_points


def test_decay_keeps_a_learned_total():
    """Persisting decayed intent does not touch a total the weights set."""
    learned_model(intent_half_life_days=10)
    contact = ContactFactory(occupation="Student")
    EngagementEventFactory(contact=contact, type="content_download", occurred_at=NOW)
    rescore_new_events(now=NOW)

    decay_scores(now=NOW + dt.timedelta(days=10))

    score = ContactScore.objects.get(contact=contact)
    assert round(score.intent_score, 1) == 7.5
    assert score.total_score == 50


def test_the_admin_switch_queues_a_rescore(admin_client):
    """Each real switch, on or off, starts one rescore job for the model."""
    model = learned_model()
    model.use_learned = False
    model.save()
    url = reverse("admin:nurture_scoringmodel_changelist")

    admin_client.post(
        url, {"action": "use_learned_model", "_selected_action": [model.pk]}
    )
    assert RescoreJob.objects.filter(model=model).count() == 1

    admin_client.post(url, {"action": "use_rules", "_selected_action": [model.pk]})
    assert RescoreJob.objects.filter(model=model).count() == 2
