"""Keep stored scores honest: persist decayed intent and refresh accounts."""

import datetime as dt
import logging
from collections import defaultdict
from collections.abc import Iterable

from django.db import transaction

from crm.models import Account
from nurture import conf
from nurture.models import ContactScore, ScoringModel

from .rules import account_value, compare, decayed

logger = logging.getLogger(__name__)

# Below this, stored intent is written as zero so decay stops revisiting it.
NEGLIGIBLE_INTENT = 0.05

SCORE_FIELDS = ["intent_score", "intent_scored_at", "total_score", "updated_at"]
ACCOUNT_FIELDS = ["fit_score", "intent_score", "intent_scored_at", "total_score"]


def refresh_account_scores(
    account_ids: Iterable[int],
    *,
    now: dt.datetime,
    model: ScoringModel | None = None,
) -> int:
    """Score accounts from their own fit and their contacts' current intent.

    Fit adds the default model's fit rules on ``account__`` fields; intent
    sums the NURTURE_ACCOUNT_TOP_CONTACTS highest current intents of the
    account's contacts, so one busy contact cannot outweigh a buying group.
    Three queries whatever the number of accounts. Return how many.
    """
    if model is None:
        from .engine import active_models

        model = next((m for m in active_models() if m.is_default), None)
    if model is None:
        return 0
    rules = [r for r in model.fit_rules if r.field.startswith("account__")]
    top = conf.get("NURTURE_ACCOUNT_TOP_CONTACTS")
    half_life = model.intent_half_life_days

    accounts = list(Account.objects.filter(pk__in=list(account_ids)))
    intents = defaultdict(list)
    for account_id, value, since in ContactScore.objects.filter(
        model=model, contact__account_id__in=[a.pk for a in accounts]
    ).values_list("contact__account_id", "intent_score", "intent_scored_at"):
        intents[account_id].append(decayed(value, since, now, half_life))

    for account in accounts:
        account.fit_score = sum(
            r.points
            for r in rules
            if compare(r.operator, account_value(account, r.field), r.value)
        )
        account.intent_score = sum(sorted(intents[account.pk], reverse=True)[:top])
        account.intent_scored_at = now
        account.total_score = account.fit_score + round(account.intent_score)
    Account.objects.bulk_update(accounts, ACCOUNT_FIELDS)
    return len(accounts)


def decay_scores(*, now: dt.datetime, batch_size: int | None = None) -> int:
    """Persist decayed intent for scores not written for a while.

    Decay happens on read, so this only keeps stored numbers (and lists
    sorted by them) close to the truth. Scores last written more than
    NURTURE_DECAY_PERSIST_HOURS ago are rewritten as of now, batch by batch
    in id order, each batch one read, one upsert and one update mirroring
    the default model onto contacts; accounts follow the same way. Return
    how many contact scores were rewritten.
    """
    from .engine import _mirror

    batch_size = batch_size or conf.get("NURTURE_RESCORE_BATCH_SIZE")
    before = now - dt.timedelta(hours=conf.get("NURTURE_DECAY_PERSIST_HOURS"))
    due = (
        ContactScore.objects.filter(intent_scored_at__lt=before)
        .exclude(intent_score=0)
        .select_related("model")
        .order_by("pk")
    )

    done, last_id = 0, 0
    while batch := list(due.filter(pk__gt=last_id)[:batch_size]):
        last_id = batch[-1].pk
        with transaction.atomic():
            for score in batch:
                # A learned total does not decay: it reads no intent.
                keep = score.model.use_learned
                _decay(score, score.model.intent_half_life_days, now, keep_total=keep)
            defaults = {s.contact_id for s in batch if s.model.is_default}
            models = {s.model_id: s.model for s in batch}
            for score in batch:
                score.pk = None
            ContactScore.objects.bulk_create(
                batch,
                update_conflicts=True,
                unique_fields=["contact", "model"],
                update_fields=SCORE_FIELDS,
            )
            default = next((m for m in models.values() if m.is_default), None)
            if defaults and default is not None:
                _mirror(default, list(defaults), now=now)
        done += len(batch)

    decay_account_scores(now=now, before=before, batch_size=batch_size)
    if done:
        logger.info("Persisted decayed intent for %d scores", done)
    return done


def decay_account_scores(
    *, now: dt.datetime, before: dt.datetime, batch_size: int
) -> int:
    """Persist decayed account intent (it decays like its contacts' intent)."""
    model = ScoringModel.objects.filter(is_default=True).first()
    if model is None:
        return 0
    due = (
        Account.objects.filter(intent_scored_at__lt=before)
        .exclude(intent_score=0)
        .only("pk", "fit_score", "intent_score", "intent_scored_at")
        .order_by("pk")
    )
    done, last_id = 0, 0
    while batch := list(due.filter(pk__gt=last_id)[:batch_size]):
        last_id = batch[-1].pk
        for account in batch:
            _decay(account, model.intent_half_life_days, now)
        Account.objects.bulk_update(batch, ACCOUNT_FIELDS)
        done += len(batch)
    return done


def _decay(
    record, half_life: float, now: dt.datetime, *, keep_total: bool = False
) -> None:
    intent = decayed(record.intent_score, record.intent_scored_at, now, half_life)
    record.intent_score = intent if intent >= NEGLIGIBLE_INTENT else 0.0
    record.intent_scored_at = now
    if not keep_total:
        record.total_score = record.fit_score + round(record.intent_score)
    if hasattr(record, "updated_at"):
        record.updated_at = now
