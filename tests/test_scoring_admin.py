"""Scoring in the admin: rules changes queue a rescore, progress is shown."""

import pytest
from django.urls import reverse

from nurture.models import RescoreJob, ScoringRule
from tests.admin_support import changelist_queries, messages_of
from tests.factories import ContactFactory, ScoringModelFactory, ScoringRuleFactory

pytestmark = pytest.mark.django_db


def _rule_form(rule, **changes):
    data = {
        "model": rule.model_id,
        "name": rule.name,
        "kind": rule.kind,
        "event_type": rule.event_type,
        "field": rule.field,
        "operator": rule.operator,
        "value": rule.value,
        "points": rule.points,
        "max_points": "",
        "cap_period_days": "",
        "is_active": "on",
    }
    data.update(changes)
    return data


def test_editing_a_rule_queues_a_rescore_of_everyone(
    admin_client, django_capture_on_commit_callbacks
):
    """Saving a changed rule starts one background job for its model."""
    rule = ScoringRuleFactory(field="country", value="india")
    ContactFactory.create_batch(2)
    url = reverse("admin:nurture_scoringrule_change", args=[rule.pk])

    with django_capture_on_commit_callbacks() as callbacks:
        response = admin_client.post(url, _rule_form(rule, points=25), follow=True)

    assert response.status_code == 200
    job = RescoreJob.objects.get()
    assert (job.model_id, job.total, job.status) == (rule.model_id, 2, "queued")
    assert len(callbacks) == 1
    assert any("recomputed" in m for m in messages_of(response))


def test_saving_an_unchanged_rule_queues_nothing(admin_client):
    """A save without changes leaves scores alone."""
    rule = ScoringRuleFactory(field="country", value="india")
    url = reverse("admin:nurture_scoringrule_change", args=[rule.pk])

    admin_client.post(url, _rule_form(rule), follow=True)

    assert not RescoreJob.objects.exists()


def test_rescore_action_and_progress_on_the_model_list(admin_client):
    """The action queues a job; the list shows its progress as a share."""
    model = ScoringModelFactory()
    url = reverse("admin:nurture_scoringmodel_changelist")

    admin_client.post(
        url, {"action": "rescore_everyone", "_selected_action": [model.pk]}
    )
    RescoreJob.objects.filter(model=model).update(
        status="running", processed=250, total=1000
    )
    response = admin_client.get(url)

    assert "running: 250 of 1,000 (25%)" in response.content.decode()


def test_rescore_job_list_costs_constant_queries(admin_client):
    """The job list runs the same queries for 1 or 10 jobs."""
    url = reverse("admin:nurture_rescorejob_changelist")
    model = ScoringModelFactory()
    RescoreJob.objects.create(model=model, created_at="2025-01-01T00:00Z")
    admin_client.get(url)
    one = changelist_queries(admin_client, url)
    for _ in range(9):
        RescoreJob.objects.create(model=model, created_at="2025-01-01T00:00Z")

    assert changelist_queries(admin_client, url) == one


def test_rule_kinds_are_offered_with_caps(admin_client):
    """The model page's rule inline edits caps per rule."""
    model = ScoringModelFactory()
    ScoringRuleFactory(model=model, kind=ScoringRule.Kind.INTENT, max_points=10)

    response = admin_client.get(
        reverse("admin:nurture_scoringmodel_change", args=[model.pk])
    )

    assert "cap_period_days" in response.content.decode()


def test_contact_pages_show_current_intent_and_every_models_score(admin_client):
    """The list decays intent to now; the page lists each model's reasons."""
    import datetime as dt

    from django.utils import timezone

    from nurture.services.scoring import rescore_new_events
    from tests.factories import EngagementEventFactory

    then = timezone.now() - dt.timedelta(days=10)
    model = ScoringModelFactory(mql_threshold=1000, intent_half_life_days=10)
    other = ScoringModelFactory(name="Product B", is_default=False)
    for scoring_model in (model, other):
        ScoringRuleFactory(
            model=scoring_model,
            name=f"Pricing under {scoring_model.name}",
            kind=ScoringRule.Kind.INTENT,
            event_type="pricing_visit",
            points=40,
        )
    contact = ContactFactory()
    EngagementEventFactory(contact=contact, type="pricing_visit", occurred_at=then)
    rescore_new_events(now=then)

    listing = admin_client.get(reverse("admin:crm_contact_changelist"))
    page = admin_client.get(reverse("admin:crm_contact_change", args=[contact.pk]))

    assert listing.context["cl"].result_list[0].half_life == 10
    assert '<td class="field-intent_now">20.0</td>' in listing.content.decode()
    body = page.content.decode()
    assert "Pricing under Default (+40)" in body
    assert "Pricing under Product B (+40)" in body
