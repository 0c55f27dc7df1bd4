"""Rescoring everyone after a rules change: jobs, batches, progress."""

import datetime as dt

import pytest

from crm.models import Contact
from nurture.models import ContactScore, RescoreJob, ScoringRule
from nurture.services.scoring import run_rescore_batch, start_rescore
from tests.factories import (
    ContactFactory,
    EngagementEventFactory,
    ScoringModelFactory,
    ScoringRuleFactory,
)

pytestmark = pytest.mark.django_db

NOW = dt.datetime(2025, 3, 3, 10, 0, tzinfo=dt.UTC)
Op = ScoringRule.Operator
Intent = ScoringRule.Kind.INTENT


def test_start_rescore_queues_one_job_after_commit(django_capture_on_commit_callbacks):
    """A rules change stamps the model and queues one job once committed."""
    model = ScoringModelFactory()
    ContactFactory.create_batch(3)

    with django_capture_on_commit_callbacks() as callbacks:
        job = start_rescore(model, now=NOW)

    assert len(callbacks) == 1
    assert job.status == RescoreJob.Status.QUEUED
    assert job.total == 3
    model.refresh_from_db()
    assert model.rules_changed_at == NOW


def test_a_newer_change_supersedes_the_open_job():
    """Only one live job per model: the older one is stopped, not resumed."""
    model = ScoringModelFactory()
    ContactFactory.create_batch(3)
    old = start_rescore(model, now=NOW)
    run_rescore_batch(old.pk, now=NOW, batch_size=1)

    new = start_rescore(model, now=NOW + dt.timedelta(minutes=1))

    old.refresh_from_db()
    assert old.status == RescoreJob.Status.FAILED
    assert "superseded" in old.error
    assert run_rescore_batch(old.pk, now=NOW, batch_size=1) is False
    assert RescoreJob.objects.get(pk=new.pk).status == RescoreJob.Status.QUEUED


def test_job_recomputes_everyone_in_batches_with_progress(django_assert_num_queries):
    """Batches walk contacts by id, recompute from history and count progress."""
    model = ScoringModelFactory(mql_threshold=1000, intent_half_life_days=10_000)
    rule = ScoringRuleFactory(
        model=model, kind=Intent, event_type="email_click", points=5
    )
    contacts = ContactFactory.create_batch(5)
    for contact in contacts:
        EngagementEventFactory(
            contact=contact, type="email_click", occurred_at=NOW, scored_at=NOW
        )
    # given the rule is re-weighted after the events were scored
    rule.points = 12
    rule.save()
    job = start_rescore(model, now=NOW)

    # when the first batch of two runs
    assert run_rescore_batch(job.pk, now=NOW, batch_size=2) is True
    job.refresh_from_db()
    assert (job.status, job.processed, job.last_contact_id) == (
        RescoreJob.Status.RUNNING,
        2,
        contacts[1].pk,
    )

    # then the rest follow, and a final call finishes the job
    while run_rescore_batch(job.pk, now=NOW, batch_size=2):
        pass
    job.refresh_from_db()
    assert job.status == RescoreJob.Status.DONE and job.processed == 5
    assert set(Contact.objects.values_list("total_score", flat=True)) == {12}
    assert ContactScore.objects.filter(model=model, total_score=12).count() == 5


@pytest.mark.parametrize("size", [3, 30])
def test_a_job_batch_costs_constant_queries(size, django_assert_num_queries):
    """A batch's queries do not grow with the number of contacts in it."""
    model = ScoringModelFactory(mql_threshold=1000)
    ScoringRuleFactory(model=model, field="country", value="india", points=5)
    for contact in ContactFactory.create_batch(size):
        EngagementEventFactory(contact=contact, occurred_at=NOW, scored_at=NOW)
    job = start_rescore(model, now=NOW)

    # claim, read job, mark started, model, rules, contact ids, savepoint,
    # contacts, events, scores, upsert, mirror, release, progress
    with django_assert_num_queries(14):
        run_rescore_batch(job.pk, now=NOW, batch_size=size)


def test_the_queue_task_finishes_a_job():
    """rescore_model_task runs every batch of a job to the end."""
    from nurture.tasks import rescore_model_task

    model = ScoringModelFactory(mql_threshold=1000)
    ContactFactory.create_batch(3)
    job = start_rescore(model, now=NOW)

    assert rescore_model_task(job.pk) is False

    job.refresh_from_db()
    assert (job.status, job.processed) == (RescoreJob.Status.DONE, 3)
