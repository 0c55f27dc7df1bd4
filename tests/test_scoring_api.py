"""Scores in the API: current (decayed) intent, per-model scores, accounts."""

import datetime as dt

import pytest
from django.utils import timezone

from nurture.models import ContactScore, ScoringRule
from nurture.services.scoring import rescore_new_events
from tests.api_support import make_manager, token_client
from tests.factories import (
    AccountFactory,
    ContactFactory,
    EngagementEventFactory,
    ScoringModelFactory,
    ScoringRuleFactory,
)

pytestmark = pytest.mark.django_db

Intent = ScoringRule.Kind.INTENT


@pytest.fixture
def api():
    return token_client(make_manager())


def _scored(days_ago: float):
    """Score one 40-point event per model, as of ``days_ago`` days back."""
    then = timezone.now() - dt.timedelta(days=days_ago)
    default = ScoringModelFactory(mql_threshold=1000, intent_half_life_days=10)
    product = ScoringModelFactory(
        name="Product B", is_default=False, mql_threshold=1000, intent_half_life_days=5
    )
    for model in (default, product):
        ScoringRuleFactory(
            model=model, name="Demo", kind=Intent, event_type="pricing_visit", points=40
        )
    contact = ContactFactory(account=AccountFactory())
    EngagementEventFactory(contact=contact, type="pricing_visit", occurred_at=then)
    rescore_new_events(now=then)
    return contact


def test_detail_shows_each_models_score_decayed_to_now(api):
    """The detail lists every active model with its current intent and reasons."""
    contact = _scored(days_ago=10)

    body = api.get(f"/api/contacts/{contact.pk}/").json()

    assert body["intent_score"] == pytest.approx(40)
    assert body["intent_now"] == pytest.approx(20, abs=0.1)
    assert body["total_now"] == 20
    by_model = {s["model"]: s for s in body["scores"]}
    assert by_model["Default"]["intent"] == pytest.approx(20, abs=0.1)
    assert by_model["Product B"]["intent"] == pytest.approx(10, abs=0.1)
    assert by_model["Product B"]["total"] == 10
    assert by_model["Default"]["explanation"][0]["rule"] == "Demo"
    assert by_model["Default"]["explanation"][0]["points"] == 40


@pytest.mark.parametrize("size", [2, 20])
def test_the_list_shows_current_intent_in_constant_queries(
    api, size, django_assert_num_queries
):
    """One extra query (the half-life) decays every row; no per-model scores."""
    contact = _scored(days_ago=10)
    ContactFactory.create_batch(size - 1)
    ContactScore.objects.exclude(contact=contact).delete()

    # token, permissions (2), manager check, count, page, half-life
    with django_assert_num_queries(7):
        body = api.get("/api/contacts/").json()

    row = next(r for r in body["results"] if r["id"] == contact.pk)
    assert row["intent_now"] == pytest.approx(20, abs=0.1)
    assert "scores" not in row


def test_account_shows_its_score_and_current_intent(api):
    """The account API carries fit, stored and current intent, and total."""
    contact = _scored(days_ago=10)

    body = api.get(f"/api/accounts/{contact.account_id}/").json()

    assert body["intent_score"] == pytest.approx(40)
    assert body["intent_now"] == pytest.approx(20, abs=0.1)
    assert body["total_score"] == 40
