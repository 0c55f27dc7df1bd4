"""Evaluation of scoring rules against known outcomes, on Leads.csv too."""

import datetime as dt
from io import StringIO

import pytest
from django.core.management import call_command

from crm.importers.leads import AFTER_CONTACT
from crm.models import Contact
from nurture.models import ScoringModel, ScoringRule
from nurture.services.evaluation import (
    LEADS_FILE,
    evaluate_scoring,
    roc_auc,
    rule_score,
    score_bands,
    top_decile_lift,
)
from nurture.services.programme import SCORING_RULES, ensure_default_programme

NOW = dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC)
Op = ScoringRule.Operator

# Every name a rule could use to read what sales wrote after contact, or
# the outcome itself.
EXCLUDED = {
    *AFTER_CONTACT,
    *AFTER_CONTACT.values(),
    "after_contact",
    "known_converted",
    "converted",
}


def test_auc_matches_a_hand_computed_example():
    """Of the four positive/negative pairs three are ordered right: AUC 0.75."""
    assert roc_auc([0.1, 0.4, 0.35, 0.8], [False, False, True, True]) == 0.75


def test_auc_counts_a_tied_pair_as_half():
    """Positives 2 and 3 against negatives 1 and 2: 1 + 0.5 + 1 + 1 of 4 pairs."""
    assert roc_auc([1, 2, 2, 3], [False, False, True, True]) == 0.875
    assert roc_auc([5, 5], [True, False]) == 0.5


def test_auc_needs_both_outcomes():
    """With only positives there is nothing to rank against: a clear error."""
    with pytest.raises(ValueError, match="positive and one negative"):
        roc_auc([1, 2], [True, True])


def test_top_decile_lift_is_the_top_tenths_rate_over_the_base_rate():
    """20 leads, 5 converted (25%); the top two both converted: lift 4."""
    scores = list(range(20))
    labels = [False] * 15 + [True] * 5
    assert top_decile_lift(scores, labels) == pytest.approx(4.0)


def test_score_bands_count_leads_and_conversions_per_band():
    """Each score lands in exactly one band; empty bands are still listed."""
    bands = score_bands(
        [-5, 0, 19, 20, 85, 100], [False, False, True, True, True, True]
    )

    assert [(b.label, b.count, b.converted) for b in bands] == [
        ("below 0", 1, 0),
        ("0-19", 2, 1),
        ("20-39", 1, 1),
        ("40-59", 0, 0),
        ("60-79", 0, 0),
        ("80+", 2, 2),
    ]
    assert bands[1].rate == 0.5


def test_rule_score_adds_fit_and_capped_undecayed_intent():
    """Fit points for the profile, intent points per event up to the cap."""
    contact = Contact(occupation="Working Professional", lead_source="Olark Chat")
    rules = [
        ScoringRule(name="pro", kind="fit", field="occupation",
                    operator=Op.EQUALS, value="working professional", points=30),
        ScoringRule(name="chat", kind="fit", field="lead_source",
                    operator=Op.EQUALS, value="Google", points=-10),
        ScoringRule(name="opens", kind="intent", event_type="email_open",
                    points=4, max_points=10),
        ScoringRule(name="off", kind="intent", event_type="email_open",
                    points=50, is_active=False),
    ]  # fmt: skip
    old = NOW - dt.timedelta(days=365)
    events = [{"type": "email_open", "properties": {}, "occurred_at": old}] * 4

    # 30 for the occupation, 4 opens at 4 capped at 10; nothing decays.
    assert rule_score(rules, contact, events, now=NOW) == 40


def test_no_default_rule_reads_sales_verdicts_or_the_outcome():
    """Tags, Lead Quality, Lead Profile, Last Notable Activity, Asymmetrique
    scores and Converted are unknown when a lead arrives: no rule uses them."""
    for name, _kind, field, _op, value, _event, _points in SCORING_RULES:
        parts = set(field.replace("__", ".").split("."))
        assert not parts & EXCLUDED, name
        assert "Asymmetrique" not in value and "Tags" not in value, name


@pytest.fixture
def leads_csv(shared_data):
    return shared_data / LEADS_FILE


@pytest.mark.django_db
def test_default_rules_rank_the_real_leads_with_auc_above_target(leads_csv):
    """The default model scores Leads.csv with AUC >= 0.85 at the file's
    base rate of 3561 in 9240, and conversion climbs band by band."""
    ensure_default_programme()
    model = ScoringModel.objects.get(is_default=True)

    evaluation, rules = evaluate_scoring(leads_csv, model=model, now=NOW)

    assert len(rules) == len(SCORING_RULES)
    assert (evaluation.n, evaluation.positives) == (9240, 3561)
    assert evaluation.base_rate == 3561 / 9240
    assert evaluation.auc >= 0.85
    assert evaluation.top_decile_lift >= 2.0
    assert sum(b.count for b in evaluation.bands) == 9240
    rates = [b.rate for b in evaluation.bands]
    assert rates == sorted(rates)


@pytest.mark.django_db
def test_an_operators_rule_edit_is_what_gets_evaluated(leads_csv):
    """Switching off the strongest rules in the database lowers the AUC the
    evaluation reports: it reads the model, not the shipped definition."""
    # Given the default model and its AUC
    ensure_default_programme()
    model = ScoringModel.objects.get(is_default=True)
    before, _ = evaluate_scoring(leads_csv, model=model, now=NOW)

    # When an operator switches off every fit rule
    model.rules.filter(kind="fit").update(is_active=False)
    after, rules = evaluate_scoring(leads_csv, model=model, now=NOW)

    # Then only the intent rules are evaluated, and they rank worse
    assert all(rule.kind == "intent" for rule in rules)
    assert after.auc < before.auc - 0.05


@pytest.mark.django_db
def test_command_reports_auc_lift_and_bands(leads_csv):
    """Without a model in the database the command evaluates the default
    programme's rules and prints AUC, lift, base rate and the band table."""
    out = StringIO()

    call_command("evaluate_scoring", str(leads_csv), stdout=out)

    text = out.getvalue()
    assert "default programme (in memory)" in text
    assert "base rate: 3561/9240 converted (38.5%)" in text
    auc = float(text.split("ROC AUC: ")[1].split()[0])
    assert auc >= 0.85
    assert "top-decile lift: " in text
    assert "80+" in text and "0-19" in text


@pytest.mark.django_db
def test_command_names_a_missing_model_or_file(tmp_path):
    """An unknown model name or an unreadable file fails with a clear error."""
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="no scoring model named 'Nope'"):
        call_command("evaluate_scoring", "--model", "Nope")
    with pytest.raises(CommandError, match="cannot read"):
        call_command("evaluate_scoring", str(tmp_path / "missing.csv"))
