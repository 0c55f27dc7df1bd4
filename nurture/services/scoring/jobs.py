"""Rescore everyone under a model in the background after its rules change."""

import datetime as dt
import logging

from django.db import transaction
from django.db.models import F

from crm.models import Contact
from nurture import conf
from nurture.models import RescoreJob, ScoringModel

from .engine import active_models, recompute_contacts

logger = logging.getLogger(__name__)

Status = RescoreJob.Status
OPEN_STATUSES = (Status.QUEUED, Status.RUNNING)


def start_rescore(model: ScoringModel, *, now: dt.datetime) -> RescoreJob:
    """Queue a full rescoring of every contact under ``model``.

    A model has one live job at a time: a newer rules change supersedes the
    open one (it stops at its next batch) and starts again from the first
    contact. The queue task is sent once the change has committed.
    """
    from django_q.tasks import async_task

    with transaction.atomic():
        ScoringModel.objects.filter(pk=model.pk).update(rules_changed_at=now)
        superseded = RescoreJob.objects.filter(
            model=model, status__in=OPEN_STATUSES
        ).update(
            status=Status.FAILED,
            finished_at=now,
            error="superseded by a newer rules change",
        )
        job = RescoreJob.objects.create(
            model=model, total=Contact.objects.count(), created_at=now
        )
        transaction.on_commit(
            lambda: async_task("nurture.tasks.rescore_model_task", job.pk)
        )
    logger.info(
        "Rescoring queued; %d older jobs superseded",
        superseded,
        extra={"rescore_job_id": job.pk, "scoring_model_id": model.pk},
    )
    return job


def run_rescore_batch(
    job_id: int, *, now: dt.datetime, batch_size: int | None = None
) -> bool:
    """Rescore the job's next batch of contacts in id order.

    Return True while contacts remain, False when the job is finished,
    superseded or gone.
    """
    batch_size = batch_size or conf.get("NURTURE_RESCORE_JOB_BATCH_SIZE")
    claimed = RescoreJob.objects.filter(pk=job_id, status__in=OPEN_STATUSES)
    if not claimed.update(status=Status.RUNNING):
        return False
    job = RescoreJob.objects.get(pk=job_id)
    if job.started_at is None:
        RescoreJob.objects.filter(pk=job_id).update(started_at=now)
    models = active_models(pk=job.model_id)

    ids = list(
        Contact.objects.filter(pk__gt=job.last_contact_id)
        .order_by("pk")
        .values_list("pk", flat=True)[:batch_size]
    )
    if not ids:
        claimed.update(status=Status.DONE, finished_at=now)
        logger.info("Rescoring finished", extra={"rescore_job_id": job_id})
        return False

    recompute_contacts(ids, models[0], now=now)
    # Only a job still running records progress: a superseded one stops.
    RescoreJob.objects.filter(pk=job_id, status=Status.RUNNING).update(
        processed=F("processed") + len(ids), last_contact_id=ids[-1]
    )
    return True
