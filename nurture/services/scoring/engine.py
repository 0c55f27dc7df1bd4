"""Fold events into every active model's scores and qualify the leads they lift.

Each active scoring model keeps one ContactScore per contact: fit from the
profile, intent as of ``intent_scored_at`` (decaying with the model's
half-life), the explanation and the points each capped rule has counted.
New events add their points on top of the decayed stored intent, so a score
never needs the contact's history again. The default model's numbers are
mirrored onto the contact, which is what lists, routing and handoffs read.

Qualification fires on a crossing: a contact becomes an MQL when a batch
lifts its score from below a model's MQL threshold to at or above it, while
it is armed (``mql_at`` empty) and still a subscriber, lead or recycled
lead. Recycling clears ``mql_at`` and ``sql_at`` (the StageChange rows keep
the history), which re-arms the thresholds for the next crossing. A
hand-raise event (NURTURE_HAND_RAISE_EVENTS) qualifies an armed lead
whatever its score.
"""

import datetime as dt
import logging
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

from django.db import transaction
from django.db.models import OuterRef, Prefetch, Subquery

from crm.models import Contact, EngagementEvent, LifecycleStage
from crm.services import change_stages
from nurture import conf
from nurture.models import ContactScore, ScoringModel, ScoringRule

from .. import learning
from ..ids import ids_in
from . import store
from .rules import capped_points, decayed, event_matches, fit_hits, is_hand_raise

logger = logging.getLogger(__name__)

# Stages from which a first crossing of the threshold makes a lead an MQL.
QUALIFYING_STAGES = (
    LifecycleStage.SUBSCRIBER,
    LifecycleStage.LEAD,
    LifecycleStage.RECYCLED,
)

# ContactScore field -> the Contact field the default model mirrors it to.
MIRRORED = {
    "fit_score": "fit_score",
    "intent_score": "intent_score",
    "intent_scored_at": "intent_scored_at",
    "total_score": "total_score",
    "explanation": "score_explanation",
}

# Where a learned model's score keeps its summary of the contact's events
# (learning.summarize_events) among the rule points; rule ids never clash.
LEARNED_KEY = "_learned"


@dataclass
class Crossings:
    """Contacts a scoring batch lifted over a threshold, per model."""

    mql: dict[int, ScoringModel] = field(default_factory=dict)
    sql: dict[int, ScoringModel] = field(default_factory=dict)
    hand_raised: set[int] = field(default_factory=set)


def current_intent(
    subject: Contact | ContactScore,
    *,
    now: dt.datetime,
    half_life: float | None = None,
) -> float:
    """Return stored intent decayed from when it was stored to now.

    ``subject`` is a contact (the default model's mirror) or one ContactScore.
    Pass ``half_life`` when scoring many rows to save the model lookup.
    """
    if half_life is None:
        if isinstance(subject, ContactScore):
            half_life = subject.model.intent_half_life_days
        else:
            model = ScoringModel.objects.filter(is_default=True).first()
            half_life = model.intent_half_life_days if model else 30.0
    return decayed(subject.intent_score, subject.intent_scored_at, now, half_life)


def active_models(**lookup) -> list[ScoringModel]:
    """Load the active scoring models with their active rules, default first.

    Two queries. Each model gets ``fit_rules`` and ``intent_rules`` lists.
    ``lookup`` narrows the models (``pk=...``), active or not.
    """
    models = list(
        ScoringModel.objects.filter(**(lookup or {"is_active": True}))
        .prefetch_related(
            Prefetch(
                "rules",
                queryset=ScoringRule.objects.filter(is_active=True).order_by("pk"),
                to_attr="active_rules",
            )
        )
        .order_by("-is_default", "pk")
    )
    for model in models:
        model.fit_rules = [r for r in model.active_rules if r.kind == "fit"]
        model.intent_rules = [r for r in model.active_rules if r.kind == "intent"]
    return models


def rescore_new_events(*, now: dt.datetime, batch_size: int | None = None) -> int:
    """Fold a batch of unscored events into every active model's scores.

    Queries per batch are fixed whatever its size and however many models
    are active: the models and rules, the events, their contacts, their
    scores, one upsert of scores, one update mirroring the default model
    onto contacts, one marking the events, and three refreshing the touched
    accounts. The leads the batch qualifies are then moved and handed off
    together, in a fixed number of queries per model that qualifies some
    (see ``qualify_contacts``). Return how many events were scored.
    """
    batch_size = batch_size or conf.get("NURTURE_RESCORE_BATCH_SIZE")
    models = active_models()
    if not models:
        logger.warning("No active scoring model: events left unscored")
        return 0

    with transaction.atomic():
        events = store.unscored_events(batch_size)
        if not events:
            return 0
        by_contact = defaultdict(list)
        for event in events:
            by_contact[event["contact_id"]].append(event)
        contacts = _lock_contacts(by_contact, models)
        crossings = _score(models, contacts, by_contact, now=now, full=False)
        store.mark_scored([e["id"] for e in events], now=now)

    _qualify(crossings, now=now)
    logger.info("Scored %d events for %d contacts", len(events), len(contacts))
    return len(events)


def score_contacts(contact_ids: Iterable[int], *, now: dt.datetime) -> int:
    """Recompute fit and decay intent to now for these contacts, every model.

    Use it after a contact's profile changes. Return how many contacts were
    scored.
    """
    models = active_models()
    if not models:
        return 0
    with transaction.atomic():
        contacts = _lock_contacts(list(contact_ids), models)
        crossings = _score(models, contacts, {}, now=now, full=False)
    _qualify(crossings, now=now)
    return len(contacts)


def recompute_contacts(
    contact_ids: Iterable[int], model: ScoringModel, *, now: dt.datetime
) -> int:
    """Score these contacts under one model from scratch, history included.

    Fit comes from the profile, intent from every scored event, decayed and
    capped as if folded in one by one. ``model`` must come from
    active_models(). A fixed number of queries; return how many contacts.
    """
    with transaction.atomic():
        contacts = _lock_contacts(list(contact_ids), [model])
        events = (
            EngagementEvent.objects.filter(
                contact_id__in=[c.pk for c in contacts], scored_at__isnull=False
            )
            .order_by("occurred_at", "id")
            .values(*store.EVENT_FIELDS)
        )
        by_contact = defaultdict(list)
        for event in events:
            by_contact[event["contact_id"]].append(event)
        crossings = _score([model], contacts, by_contact, now=now, full=True)
    _qualify(crossings, now=now)
    return len(contacts)


def _lock_contacts(contact_ids: Iterable[int], models: list[ScoringModel]) -> list:
    """Lock and read the contacts, as light rows when the rules allow it."""
    columns = store.rule_columns(models)
    if columns is not None:
        return store.load_contacts(contact_ids, columns)
    return list(
        Contact.objects.filter(pk__in=list(contact_ids))
        .select_related("account")
        .select_for_update(of=("self",))
        .order_by("pk")
    )


def _score(
    models: list[ScoringModel],
    contacts: list,
    by_contact: dict[int, list[dict]],
    *,
    now: dt.datetime,
    full: bool,
) -> Crossings:
    """Update the contacts' scores under ``models`` and store them in bulk."""
    from .upkeep import refresh_account_scores

    ids = [c.pk for c in contacts]
    stored = store.load_scores(ids, [m.pk for m in models])
    hand_raises = conf.get("NURTURE_HAND_RAISE_EVENTS")
    default = next((m for m in models if m.is_default), None)
    seeds = _seeds(default, contacts, stored, full=full)
    histories = _histories(models, ids, stored, full=full)

    crossings, changed, mirrored = Crossings(), [], []
    memo: dict = {}
    for contact in contacts:
        events = by_contact.get(contact.pk, [])
        if any(is_hand_raise(e, hand_raises) for e in events):
            crossings.hand_raised.add(contact.pk)
        for model in models:
            score = stored.get((contact.pk, model.pk))
            # Compare against the stored score decayed to now: a lead whose
            # intent faded below the threshold crosses it again.
            before = _total_now(score, model, now) if score else 0
            if score is None or full:
                seed = None if full else seeds.get(contact.pk, [])
                score = _fresh_score(contact, model, seed=seed)
            _fold_safely(
                model,
                score,
                contact,
                events,
                now=now,
                history=histories.get(contact.pk),
                memo=memo,
            )
            changed.append(score)
            if model is default:
                mirrored.append(score)
            _note_crossing(crossings, model, contact.pk, before, score.total_score)

    explained = store.upsert_scores(changed)
    if default is not None and ids:
        store.mirror_scores(mirrored, now=now, explained=explained)
        account_ids = {c.account_id for c in contacts if c.account_id}
        if account_ids:
            refresh_account_scores(account_ids, now=now, model=default)
    return crossings


def _fold_safely(model, score, contact, events, **kwargs) -> None:
    """Fold events into a score; a stored score past reading must not stop
    the batch (and with it every other contact's scoring, run after run).

    Such a score keeps its intent and starts its explanation and capped
    points afresh, and the log says so.
    """
    try:
        fold_events(model, score, contact, events, **kwargs)
    except (TypeError, ValueError, KeyError, AttributeError):
        logger.exception(
            "Score of contact %s under %s could not be read; its explanation "
            "and rule caps start afresh",
            contact.pk,
            model.name,
        )
        score.explanation, score.rule_points = [], {}
        fold_events(model, score, contact, events, **kwargs)


def _seeds(default, contacts, stored, *, full: bool) -> dict[int, list]:
    """Return the explanations of contacts whose first default score seeds.

    Scores stored before per-model scoring live on the contact alone; the
    default model's first score starts from them. One query, only when
    such a contact is in the batch.
    """
    if default is None or full:
        return {}
    seeded = [
        c.pk
        for c in contacts
        if (c.intent_score or c.intent_scored_at) and (c.pk, default.pk) not in stored
    ]
    return store.load_explanations(seeded)


def _histories(models, ids, stored, *, full: bool) -> dict[int, list[dict]]:
    """Return the scored events of contacts a learned model has no summary of.

    A learned model keeps a summary of each contact's events with its score
    (see fold_events); a contact first scored under it needs its history
    once. One query, only when such a contact is in the batch.
    """
    if full:
        return {}
    missing = [
        contact_id
        for model in models
        if model.use_learned
        for contact_id in ids
        if LEARNED_KEY
        not in getattr(stored.get((contact_id, model.pk)), "rule_points", {})
    ]
    return store.load_history(sorted(set(missing)))


def _fresh_score(contact, model: ScoringModel, *, seed: list | None):
    """Start a contact's score under a model.

    The default model seeds from what the contact already carries, so scores
    stored before per-model scoring keep their intent.
    """
    score = store.Score(contact_id=contact.pk, model_id=model.pk)
    if seed is not None and model.is_default:
        score.intent_score = contact.intent_score
        score.intent_scored_at = contact.intent_scored_at
        score.explanation = seed or []
    return score


def fold_events(
    model: ScoringModel,
    score,
    contact,
    events: list[dict],
    *,
    now: dt.datetime,
    history: list[dict] | None = None,
    memo: dict | None = None,
) -> None:
    """Set a score in memory from the profile, decayed intent and new events.

    Fit and intent always come from the rules, so the explanation says
    which fired. Under a model with ``use_learned`` the learned weights set
    the total instead, from the contact's profile and a summary of every
    event folded so far, kept in ``rule_points`` under LEARNED_KEY;
    ``history`` stands in for a summary the score does not have yet;
    ``memo`` is shared by the contacts of a batch (see fit_hits).
    """
    half_life = model.intent_half_life_days
    fit = fit_hits(model.fit_rules, contact, now=now, memo=memo)
    intent = decayed(score.intent_score, score.intent_scored_at, now, half_life)
    lines = intent_lines(score.explanation)
    rule_points = dict(score.rule_points or {})
    for event in events:
        for rule in model.intent_rules:
            if not event_matches(rule, event):
                continue
            points = capped_points(rule, rule_points, event["occurred_at"])
            if not points:
                continue
            # An event reported late has already lost part of its weight.
            intent += decayed(points, event["occurred_at"], now, half_life)
            _count_hit(lines, rule.name, points, event["occurred_at"].isoformat())

    score.fit_score = sum(hit["points"] for hit in fit)
    score.intent_score = intent
    score.intent_scored_at = now
    score.total_score = score.fit_score + round(intent)
    score.explanation = fit + sorted(lines.values(), key=_last_hit)
    score.rule_points = rule_points
    score.updated_at = now
    if model.use_learned:
        _score_learned(model, score, contact, events, history, now=now)


def intent_lines(explanation) -> dict[str, dict]:
    """Return an explanation's intent lines by rule name, one per rule.

    A line sums what a rule has counted for the contact: ``points`` (before
    decay), ``hits`` and ``at``, the time of its latest hit. Explanations
    stored one line per hit (before lines were summed) merge on reading. A
    line no scoring run wrote (edited by hand, say) is read as well as it can
    be, or skipped: an explanation never stops a contact being scored.
    """
    lines: dict[str, dict] = {}
    if not isinstance(explanation, list):
        return lines
    for line in explanation:
        if not isinstance(line, dict) or line.get("kind") != "intent":
            continue
        line = _readable(line)
        if line is None:
            continue
        merged = lines.get(line["rule"])
        if merged is None:
            lines[line["rule"]] = line
        else:
            merged["points"] += line["points"]
            merged["hits"] += line["hits"]
            merged["at"] = max(merged["at"], line["at"])
    return lines


def _readable(line: dict) -> dict | None:
    rule = line.get("rule")
    if isinstance(rule, int) and not isinstance(rule, bool):
        rule = str(rule)
    if not isinstance(rule, str) or not rule:
        return None
    points, hits, at = line.get("points"), line.get("hits", 1), line.get("at")
    if isinstance(points, bool) or not isinstance(points, int | float):
        points = 0
    if isinstance(hits, bool) or not isinstance(hits, int) or hits < 1:
        hits = 1
    line.update(
        rule=rule, points=points, hits=hits, at=at if isinstance(at, str) else ""
    )
    return line


def _count_hit(lines: dict[str, dict], rule: str, points: int, at: str) -> None:
    line = lines.get(rule)
    if line is None:
        lines[rule] = {
            "rule": rule,
            "kind": "intent",
            "points": points,
            "hits": 1,
            "at": at,
        }
    else:
        line["points"] += points
        line["hits"] += 1
        line["at"] = max(line["at"], at)


def _last_hit(line: dict) -> str:
    return line["at"]


def _score_learned(model, score, contact, events, history, *, now) -> None:
    """Let the learned weights set the total and say so in the explanation."""
    summary = score.rule_points.pop(LEARNED_KEY, None)
    if summary is None:
        summary = learning.summarize_events(history or [])
    summary = learning.summarize_events(events, summary)
    score.rule_points[LEARNED_KEY] = summary

    features = learning.summary_features(contact, summary)
    score.total_score = round(learning.learned_score(model, features))
    reasons = learning.top_contributions(model, features)
    because = "; ".join(f"{name} ({effect:+.2f})" for name, effect in reasons)
    score.explanation.append(
        {
            "rule": f"Learned model set the total to {score.total_score} of 100"
            + (f"; strongest: {because}" if because else ""),
            "kind": "learned",
            "points": score.total_score,
            "at": now.isoformat(),
            "features": [
                {"feature": name, "log_odds": effect} for name, effect in reasons
            ],
        }
    )


def _total_now(score, model: ScoringModel, now: dt.datetime) -> int:
    if model.use_learned:
        # A learned total reads the profile and events, not time: no decay.
        return score.total_score
    intent = decayed(
        score.intent_score, score.intent_scored_at, now, model.intent_half_life_days
    )
    return score.fit_score + round(intent)


def _note_crossing(crossings, model, contact_id, before, after) -> None:
    if before < model.mql_threshold <= after:
        crossings.mql.setdefault(contact_id, model)
    threshold = model.sql_threshold
    if threshold is not None and before < threshold <= after:
        crossings.sql.setdefault(contact_id, model)


def _mirror(model: ScoringModel, contact_ids: list[int], *, now: dt.datetime):
    """Copy the default model's scores onto the contacts in one update."""
    scores = ContactScore.objects.filter(contact_id=OuterRef("pk"), model=model)
    Contact.objects.filter(pk__in=contact_ids).update(
        **{
            target: Subquery(scores.values(source)[:1])
            for source, target in MIRRORED.items()
        },
        updated_at=now,
    )


def _qualify(crossings: Crossings, *, now: dt.datetime) -> None:
    by_model = defaultdict(list)
    for contact_id, model in crossings.mql.items():
        by_model[model].append(contact_id)
    for model, ids in by_model.items():
        qualify_contacts(ids, now=now, model=model)
    if crossings.hand_raised:
        qualify_contacts(crossings.hand_raised, now=now, hand_raise=True)

    by_model = defaultdict(list)
    for contact_id, model in crossings.sql.items():
        by_model[model].append(contact_id)
    for model, ids in by_model.items():
        promote_to_sql(ids, now=now, model=model)


def qualify_contacts(
    contact_ids: Iterable[int],
    *,
    now: dt.datetime,
    model: ScoringModel | None = None,
    hand_raise: bool = False,
) -> int:
    """Make MQLs of armed leads at a model's threshold, or who raised a hand.

    Armed means never qualified since created or last recycled (``mql_at``
    empty) and still a subscriber, lead or recycled lead. Each qualified lead
    gets a stage change and a handoff, all in one batch (``change_stages``,
    ``hand_off_many``) whose queries do not grow with its size; when the
    batch fails, the leads are tried one by one so one failure stops no
    other. Return how many qualified.
    """
    ids = list(contact_ids)
    if not ids:
        return 0
    model = model or ScoringModel.objects.filter(is_default=True).first()
    # Ordered by id, so the database looks the few contacts up by id; under
    # the default order (by score) SQLite walked every lead of those stages.
    qualified = (
        Contact.objects.filter(
            ids_in("pk", ids),
            mql_at__isnull=True,
            lifecycle_stage__in=QUALIFYING_STAGES,
        )
        .select_related("account")
        .order_by("pk")
    )
    if not hand_raise:
        if model is None:
            return 0
        totals = ContactScore.objects.filter(contact_id=OuterRef("pk"), model=model)
        qualified = qualified.annotate(
            model_total=Subquery(totals.values("total_score")[:1])
        ).filter(model_total__gte=model.mql_threshold)

    def reason(contact: Contact) -> str:
        if hand_raise:
            return "raised a hand"
        return (
            f"score {contact.model_total} reached the MQL threshold of "
            f"{model.mql_threshold} under {model.name}"
        )

    try:
        handoffs = _qualify_batch(qualified, reason, now=now)
    except Exception:
        # One contact's failure must not stop the others: go one by one, on
        # fresh rows, since the batch rolled back what it had changed.
        logger.exception("Qualifying a batch failed; qualifying one by one")
        handoffs = []
        for contact_id in ids:
            try:
                handoffs += _qualify_batch(
                    qualified.filter(pk=contact_id), reason, now=now
                )
            except Exception:
                logger.exception(
                    "Qualification failed", extra={"contact_id": contact_id}
                )
    count = len(handoffs)
    waiting = sum(handoff is None for handoff in handoffs)
    if count:
        logger.info("Qualified %d contacts as MQL", count)
    if waiting:
        logger.warning(
            "%d new MQLs wait for a rep with free capacity; they are handed "
            "off as handoffs are decided",
            waiting,
        )
    return count


def _qualify_batch(qualified, reason, *, now: dt.datetime) -> list:
    """Make MQLs of the armed contacts a queryset finds, hand them off, all or none.

    The contacts are read under a row lock in the same transaction, so two
    scoring workers that saw the same lead cross cannot both qualify it: the
    second waits for the first and then no longer finds it armed. Return
    each contact's handoff, None for those waiting for a rep.
    """
    from ..handoffs import hand_off_many

    with transaction.atomic():
        contacts = list(qualified.select_for_update(of=("self",)))
        if not contacts:
            return []
        change_stages(contacts, LifecycleStage.MQL, now=now, reason=reason)
        return hand_off_many(contacts, now=now)


def promote_to_sql(
    contact_ids: Iterable[int], *, now: dt.datetime, model: ScoringModel
) -> int:
    """Make SQLs of armed MQLs whose score crossed the model's SQL threshold."""
    if model.sql_threshold is None:
        return 0
    promoted = Contact.objects.filter(
        ids_in("pk", contact_ids),
        sql_at__isnull=True,
        lifecycle_stage=LifecycleStage.MQL,
        scores__model=model,
        scores__total_score__gte=model.sql_threshold,
    ).order_by("pk")  # by id, not by walking every MQL (see qualify_contacts)
    changes = change_stages(
        promoted,
        LifecycleStage.SQL,
        now=now,
        reason=f"score reached the SQL threshold of {model.sql_threshold} "
        f"under {model.name}",
    )
    return len(changes)
