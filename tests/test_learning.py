"""The learned scoring model: features, fitting, scoring, admin."""

import datetime as dt
from io import StringIO

import pytest
from django.core.management import call_command
from django.urls import reverse

from crm.importers.leads import AFTER_CONTACT
from crm.models import Contact, EngagementEvent, Opportunity
from nurture.models import Handoff, ScoringModel
from nurture.services.errors import NurtureError
from nurture.services.evaluation import LEADS_FILE, load_lead_samples
from nurture.services.learning import (
    closed_loop_samples,
    contact_features,
    describe_weights,
    fit_learned_model,
    fit_scoring_model,
    learned_score,
    set_use_learned,
)
from nurture.services.programme import ensure_default_programme

from .factories import (
    ContactFactory,
    EngagementEventFactory,
    HandoffFactory,
    OpportunityFactory,
    ScoringModelFactory,
)

NOW = dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC)
T = EngagementEvent.Type

EXCLUDED_WORDS = {
    *(key.casefold() for key in AFTER_CONTACT.values()),
    "after_contact",
    "converted",
    "asymmetrique",
    "tags",
}


def web(**properties):
    return {"type": T.WEB_ACTIVITY, "properties": properties, "occurred_at": NOW}


@pytest.fixture
def leads_csv(shared_data):
    return shared_data / LEADS_FILE


def test_features_name_the_profile_events_and_web_activity():
    """A lead's features are its profile values, flags, event kinds and
    web activity as log counts and "at least" steps."""
    contact = Contact(
        lead_origin="Lead Add Form",
        occupation="Working Professional",
        country="Qatar",
        do_not_email=True,
    )
    events = [
        web(seconds_on_site=650, visits=2),
        {"type": T.SMS_SENT, "properties": {}, "occurred_at": NOW},
    ]

    features = contact_features(contact, events)

    assert features["lead_origin=Lead Add Form"] == 1.0
    assert features["occupation=Working Professional"] == 1.0
    assert features["country=abroad"] == 1.0
    assert features["lead_source="] == 1.0
    assert features["do_not_email"] == 1.0
    assert "do_not_call" not in features
    assert features["event=sms_sent"] == 1.0
    assert features["seconds_on_site>=600"] == 1.0
    assert "seconds_on_site>=900" not in features
    assert features["log1p:visits"] == pytest.approx(1.0986, abs=1e-4)
    assert "web_activity=none" not in features


def test_sales_verdicts_and_the_outcome_never_become_features():
    """Two contacts differing only in after-contact columns and the held-out
    outcome get identical features."""
    plain = Contact(lead_origin="API", attributes={"lead_number": "1"})
    judged = Contact(
        lead_origin="API",
        known_converted=True,
        attributes={
            "lead_number": "1",
            "after_contact": {"tags": "Will revert after reading the email"},
        },
    )

    assert contact_features(judged, []) == contact_features(plain, [])


def test_no_feature_of_the_real_leads_mentions_an_excluded_column(leads_csv):
    """Over every row of Leads.csv no feature name comes from Tags, Lead
    Quality, Lead Profile, Last Notable Activity, Asymmetrique or Converted."""
    names = set()
    for sample in load_lead_samples(leads_csv, now=NOW):
        names.update(contact_features(sample.contact, sample.events))

    for name in names:
        assert not any(word in name.casefold() for word in EXCLUDED_WORDS), name


def test_learned_score_is_a_probability_that_rises_with_a_weight():
    """Score = 100 x logistic(intercept + weights . features); raising the
    weight of a present feature raises it, an absent one changes nothing."""
    model = ScoringModel(learned_intercept=0.0, learned_weights={"a": 0.0, "b": 1.0})
    features = {"a": 1.0}
    assert learned_score(model, features) == pytest.approx(50.0)

    scores = []
    for weight in (-2.0, -0.5, 0.0, 0.5, 2.0):
        model.learned_weights["a"] = weight
        scores.append(learned_score(model, features))
    assert scores == sorted(scores) and len(set(scores)) == 5
    assert 0 < scores[0] < scores[-1] < 100

    model.learned_weights["b"] = 50.0
    assert learned_score(model, features) == scores[-1]


def test_learned_score_of_an_unfitted_model_is_zero():
    """Before any fit there is no probability to give: every lead scores 0."""
    assert learned_score(ScoringModel(), {"a": 1.0}) == 0.0


def test_weights_read_as_rules_largest_effect_first():
    """Each weight becomes a sentence with its signed value, by magnitude."""
    lines = describe_weights(
        {
            "seconds_on_site>=600": 1.5,
            "lead_origin=Lead Add Form": 2.31,
            "occupation=": -1.7,
            "event=sms_sent": 0.4,
            "log1p:visits": -0.05,
            "do_not_email": -1.1,
        }
    )

    assert lines == [
        "Lead origin is Lead Add Form: +2.31",
        "Occupation is blank: -1.70",
        "Seconds on site at least 600: +1.50",
        "Asked not to be emailed: -1.10",
        "SMS sent event recorded: +0.40",
        "log(1 + visits), per unit: -0.05",
    ]


def test_fitting_needs_enough_outcomes_of_each_kind():
    """Five folds need five of each outcome; fewer is refused by name."""
    with pytest.raises(NurtureError) as refused:
        fit_learned_model([{"a": 1.0}] * 8, [True] * 4 + [False] * 4)
    assert refused.value.field == "outcomes"


@pytest.mark.django_db
def test_learned_model_beats_the_rules_on_the_real_leads(leads_csv):
    """Fitted on Leads.csv's Converted column, the learned model's five-fold
    CV AUC is at least 0.89 and above the default rules' on the same folds;
    its weights and metrics are stored on the model, the switch untouched."""
    ensure_default_programme()
    model = ScoringModel.objects.get(is_default=True)
    samples = load_lead_samples(leads_csv, now=NOW)

    fit = fit_scoring_model(model, samples, now=NOW, source="Leads.csv")

    assert fit.cv_auc >= 0.89
    assert fit.rules_auc == pytest.approx(0.87, abs=0.01)
    assert fit.beats_rules is True
    model.refresh_from_db()
    assert model.learned_weights == fit.weights
    assert model.learned_weights["lead_origin=Lead Add Form"] > 0
    assert model.learned_weights["occupation=Working Professional"] > 0
    assert model.learned_at == NOW
    assert model.learned_metrics["n"] == 9240
    assert model.learned_metrics["positives"] == 3561
    assert model.learned_metrics["cv_auc"] >= 0.89
    assert model.learned_metrics["beats_rules"] is True
    assert model.use_learned is False

    # A working professional from the lead add form who spent 20 minutes on
    # the site outscores an unknown chat lead who left at once.
    hot = Contact(lead_origin="Lead Add Form", occupation="Working Professional")
    cold = Contact(lead_origin="API", lead_source="Olark Chat")
    hot_score = learned_score(model, contact_features(hot, [web(seconds_on_site=1200)]))
    cold_score = learned_score(model, contact_features(cold, [web(seconds_on_site=0)]))
    assert hot_score > 80 > 20 > cold_score


@pytest.mark.django_db
def test_closed_loop_outcomes_label_contacts(django_assert_num_queries):
    """Won is positive and lost negative; without a closed deal an accepted
    handoff is positive and a bad-fit rejection negative; "not now" is no
    verdict. The contacts come with their events, in four queries."""
    won, lost, accepted, bad_fit, not_now, lost_after_accept = (
        ContactFactory() for _ in range(6)
    )
    OpportunityFactory(contact=won, stage=Opportunity.Stage.WON)
    OpportunityFactory(contact=lost, stage=Opportunity.Stage.LOST)
    OpportunityFactory(contact=None, stage=Opportunity.Stage.WON)
    HandoffFactory(contact=accepted, status=Handoff.Status.ACCEPTED)
    HandoffFactory(
        contact=bad_fit,
        status=Handoff.Status.REJECTED,
        rejection_reason="bad_fit: student",
    )
    HandoffFactory(
        contact=not_now, status=Handoff.Status.REJECTED, rejection_reason="not_now"
    )
    HandoffFactory(contact=lost_after_accept, status=Handoff.Status.ACCEPTED)
    OpportunityFactory(contact=lost_after_accept, stage=Opportunity.Stage.LOST)
    EngagementEventFactory(contact=won, type=T.DEMO_REQUEST)

    with django_assert_num_queries(4):
        samples = closed_loop_samples()

    labels = {s.contact.pk: s.converted for s in samples}
    assert labels == {
        won.pk: True,
        lost.pk: False,
        accepted.pk: True,
        bad_fit.pk: False,
        lost_after_accept.pk: False,
    }
    events = {s.contact.pk: [e["type"] for e in s.events] for s in samples}
    assert events[won.pk] == [T.DEMO_REQUEST]


@pytest.mark.django_db
def test_fit_command_learns_from_closed_loop_outcomes():
    """With enough won and lost deals the command fits and stores weights;
    the leads that won came through the lead add form, so that weighs +."""
    # Given ten won deals from the lead add form and ten lost ones from API
    model = ScoringModelFactory()
    for index in range(20):
        won = index < 10
        contact = ContactFactory(lead_origin="Lead Add Form" if won else "API")
        stage = Opportunity.Stage.WON if won else Opportunity.Stage.LOST
        OpportunityFactory(contact=contact, stage=stage)
    out = StringIO()

    # When the command runs without a file
    call_command("fit_scoring_model", stdout=out)

    # Then the model holds weights learned from those outcomes
    model.refresh_from_db()
    assert model.learned_metrics["source"] == "closed-loop outcomes"
    assert model.learned_metrics["n"] == 20
    assert model.learned_weights["lead_origin=Lead Add Form"] > 0
    assert "Fitted Default on 20 outcomes from closed-loop outcomes" in out.getvalue()


@pytest.mark.django_db
def test_fit_command_refuses_without_outcomes():
    """No closed-loop outcome yet: a clear error, nothing stored."""
    from django.core.management.base import CommandError

    model = ScoringModelFactory()
    with pytest.raises(CommandError, match="need at least 5 converted"):
        call_command("fit_scoring_model")
    model.refresh_from_db()
    assert model.learned_intercept is None


@pytest.mark.django_db
def test_use_learned_switch_needs_fitted_weights():
    """An operator cannot switch a model to weights it does not have."""
    model = ScoringModelFactory()
    with pytest.raises(NurtureError):
        set_use_learned(model, enabled=True, now=NOW)

    model.learned_intercept = -0.5
    model.save()
    set_use_learned(model, enabled=True, now=NOW)
    model.refresh_from_db()
    assert model.use_learned is True


@pytest.mark.django_db
def test_admin_shows_learned_weights_as_readable_rules(admin_client):
    """The scoring model page lists the weights as rules, largest first,
    with the cross-validated metrics, and no raw weights to edit."""
    model = ScoringModelFactory(
        learned_intercept=-1.2,
        learned_weights={"lead_origin=Lead Add Form": 2.31, "visits>=5": 0.4},
        learned_metrics={
            "cv_auc": 0.9,
            "rules_auc": 0.87,
            "beats_rules": True,
            "n": 9240,
            "source": "Leads.csv",
        },
        learned_at=NOW,
    )

    response = admin_client.get(
        reverse("admin:nurture_scoringmodel_change", args=[model.pk])
    )

    html = response.content.decode()
    assert response.status_code == 200
    first = html.index("Lead origin is Lead Add Form: +2.31")
    assert first < html.index("Visits at least 5: +0.40")
    assert "5-fold cross-validated AUC 0.900 on 9240 outcomes" in html
    assert "so it beats them" in html
    assert 'name="learned_weights"' not in html


@pytest.mark.django_db
def test_admin_actions_switch_between_learned_weights_and_rules(admin_client):
    """The switch is an action; a model with no weights is refused by name."""
    # Given a fitted model and an unfitted one
    fitted = ScoringModelFactory(name="Fitted", learned_intercept=0.1)
    unfitted = ScoringModelFactory(name="Unfitted", is_default=False)
    url = reverse("admin:nurture_scoringmodel_changelist")

    # When both are switched to learned weights
    response = admin_client.post(
        url,
        {"action": "use_learned_model", "_selected_action": [fitted.pk, unfitted.pk]},
        follow=True,
    )

    # Then only the fitted one is, and the other is named with the reason
    fitted.refresh_from_db()
    unfitted.refresh_from_db()
    assert fitted.use_learned is True
    assert unfitted.use_learned is False
    messages = [str(m) for m in response.context["messages"]]
    assert any(m.startswith("Unfitted: has no learned weights") for m in messages)

    # And back to the rules
    admin_client.post(
        url, {"action": "use_rules", "_selected_action": [fitted.pk]}, follow=True
    )
    fitted.refresh_from_db()
    assert fitted.use_learned is False
