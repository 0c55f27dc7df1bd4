"""Account scores: the account's own fit plus its contacts' top intent."""

import datetime as dt

import pytest

from crm.models import Account
from nurture.models import ScoringRule
from nurture.services.scoring import decay_scores, rescore_new_events
from tests.factories import (
    AccountFactory,
    ContactFactory,
    EngagementEventFactory,
    ScoringModelFactory,
    ScoringRuleFactory,
)

pytestmark = pytest.mark.django_db

NOW = dt.datetime(2025, 3, 3, 10, 0, tzinfo=dt.UTC)
Intent = ScoringRule.Kind.INTENT


def test_account_scores_from_fit_and_top_contacts_intent(settings):
    """An account adds its fit rules and its busiest contacts' intent."""
    settings.NURTURE_ACCOUNT_TOP_CONTACTS = 2
    model = ScoringModelFactory(mql_threshold=1000, intent_half_life_days=10)
    ScoringRuleFactory(
        model=model, field="account__industry", value="software", points=15
    )
    ScoringRuleFactory(model=model, kind=Intent, event_type="page_view", points=10)
    account = AccountFactory(industry="Software")
    busy, steady, quiet = ContactFactory.create_batch(3, account=account)
    for contact, views in ((busy, 3), (steady, 2), (quiet, 1)):
        EngagementEventFactory.create_batch(views, contact=contact, occurred_at=NOW)

    rescore_new_events(now=NOW)

    account.refresh_from_db()
    assert account.fit_score == 15
    assert account.intent_score == pytest.approx(30 + 20)
    assert account.total_score == 65
    assert account.intent_scored_at == NOW


def test_account_intent_decays_with_the_persist_task():
    """The decay task brings stored account intent down like its contacts'."""
    model = ScoringModelFactory(mql_threshold=1000, intent_half_life_days=10)
    ScoringRuleFactory(model=model, kind=Intent, event_type="page_view", points=40)
    account = AccountFactory()
    EngagementEventFactory(contact=ContactFactory(account=account), occurred_at=NOW)
    rescore_new_events(now=NOW)

    decay_scores(now=NOW + dt.timedelta(days=10))

    assert Account.objects.get(pk=account.pk).intent_score == pytest.approx(20)
