"""Measure how well a scoring model ranks leads whose outcome is known.

The proof runs on the X Education export (Leads.csv): each row becomes the
same unsaved contact and events the lead importer would store, the model's
rules score it in memory, and the file's Converted column is compared
against the score. Nothing is written to the database and no rule can read
the outcome: it is taken off the contact before scoring.
"""

import dataclasses
import datetime as dt
import logging
import os
from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

from crm.importers.base import BadValue, read_rows
from crm.importers.leads import REQUIRED_COLUMNS, parse_lead
from crm.models import Contact
from nurture.models import ScoringModel, ScoringRule

from .scoring.rules import capped_points, event_matches, fit_hits

logger = logging.getLogger(__name__)

LEADS_FILE = "GnyaneshKanchetti2002__XEducation-LeadScoringCaseStudy/Leads.csv"

# Score bands as (label, lowest score, highest score); None is open-ended.
SCORE_BANDS = (
    ("below 0", None, -1),
    ("0-19", 0, 19),
    ("20-39", 20, 39),
    ("40-59", 40, 59),
    ("60-79", 60, 79),
    ("80+", 80, None),
)


@dataclasses.dataclass
class Sample:
    """A contact as it arrived, its events, and whether it converted."""

    contact: Contact
    events: list[dict[str, Any]]
    converted: bool


@dataclasses.dataclass(frozen=True)
class Band:
    label: str
    count: int
    converted: int

    @property
    def rate(self) -> float:
        return self.converted / self.count if self.count else 0.0


@dataclasses.dataclass
class Evaluation:
    """How a score ranks a known outcome."""

    n: int
    positives: int
    auc: float
    top_decile_lift: float
    bands: list[Band]

    @property
    def base_rate(self) -> float:
        return self.positives / self.n if self.n else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "positives": self.positives,
            "base_rate": self.base_rate,
            "auc": self.auc,
            "top_decile_lift": self.top_decile_lift,
            "bands": [
                {"band": b.label, "count": b.count, "converted": b.converted}
                for b in self.bands
            ],
        }


def roc_auc(scores: Sequence[float], labels: Sequence[bool]) -> float:
    """Return the ROC AUC of ``scores`` for ``labels`` (ties count half).

    This is the Mann-Whitney statistic: the chance that a random positive
    scores above a random negative. Tied scores share their average rank.
    """
    positives = sum(1 for label in labels if label)
    negatives = len(labels) - positives
    if not positives or not negatives:
        raise ValueError("AUC needs at least one positive and one negative")

    ordered = sorted(zip(scores, labels, strict=True), key=lambda pair: pair[0])
    positive_rank_sum = 0.0
    start = 0
    while start < len(ordered):
        end = start
        while end < len(ordered) and ordered[end][0] == ordered[start][0]:
            end += 1
        # Ranks start + 1 .. end are tied; each gets their mean.
        mean_rank = (start + 1 + end) / 2
        positive_rank_sum += mean_rank * sum(1 for _, y in ordered[start:end] if y)
        start = end

    u = positive_rank_sum - positives * (positives + 1) / 2
    return u / (positives * negatives)


def top_decile_lift(scores: Sequence[float], labels: Sequence[bool]) -> float:
    """Return the conversion rate of the top tenth by score over the base rate.

    Ties at the cut are broken by input order, so the top tenth is always
    exactly a tenth (rounded up) of the leads.
    """
    base = sum(1 for label in labels if label) / len(labels)
    ranked = sorted(range(len(scores)), key=lambda index: scores[index], reverse=True)
    top = ranked[: max(1, -(-len(ranked) // 10))]
    rate = sum(1 for index in top if labels[index]) / len(top)
    return rate / base if base else 0.0


def score_bands(
    scores: Sequence[float], labels: Sequence[bool], bands=SCORE_BANDS
) -> list[Band]:
    """Count leads and conversions in each score band, empty bands included."""
    counts: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for score, label in zip(scores, labels, strict=True):
        for name, low, high in bands:
            if (low is None or score >= low) and (high is None or score <= high):
                counts[name][0] += 1
                counts[name][1] += bool(label)
                break
    return [Band(name, *counts[name]) for name, _, _ in bands]


def evaluate(scores: Sequence[float], labels: Sequence[bool]) -> Evaluation:
    """Summarise how well ``scores`` rank ``labels``."""
    return Evaluation(
        n=len(labels),
        positives=sum(1 for label in labels if label),
        auc=roc_auc(scores, labels),
        top_decile_lift=top_decile_lift(scores, labels),
        bands=score_bands(scores, labels),
    )


def rule_score(
    rules: Iterable[ScoringRule],
    contact: Contact,
    events: Iterable[dict],
    *,
    now: dt.datetime,
) -> int:
    """Score a contact and its events with ``rules`` as of ``now``, undecayed.

    Fit rules test the contact, intent rules each event, with the same
    helpers the scoring engine uses, caps included. Nothing decays: every
    event counts in full, as it does the moment it is scored.
    """
    rules = [rule for rule in rules if rule.is_active]
    fit_rules = [r for r in rules if r.kind == ScoringRule.Kind.FIT]
    total = sum(hit["points"] for hit in fit_hits(fit_rules, contact, now=now))

    events = list(events)
    for rule in rules:
        if rule.kind != ScoringRule.Kind.INTENT:
            continue
        # One cap ledger per rule: in-memory rules may have no id to key on.
        counted: dict = {}
        for event in events:
            if event_matches(rule, event):
                total += capped_points(rule, counted, event["occurred_at"] or now)
    return total


def load_lead_samples(path: str | os.PathLike, *, now: dt.datetime) -> list[Sample]:
    """Read Leads.csv into unsaved contacts and events, with their outcome.

    Rows are parsed by the lead importer, so the contact fields and events
    are exactly those an import at ``now`` stores. Rows the importer
    refuses, and rows without a Converted value, are left out.
    """
    samples, skipped = [], 0
    for row in read_rows(path, required=REQUIRED_COLUMNS):
        try:
            lead = parse_lead(row)
        except BadValue:
            skipped += 1
            continue
        fields = dict(lead.fields)
        converted = fields.pop("known_converted")
        if converted is None:
            skipped += 1
            continue
        contact = Contact(
            external_id=lead.external_id, attributes=lead.attributes, **fields
        )
        if lead.unsubscribed:
            contact.unsubscribed_at = now
        events = [
            {"type": spec.type, "properties": spec.properties, "occurred_at": now}
            for spec in lead.events
        ]
        samples.append(Sample(contact, events, bool(converted)))
    if skipped:
        logger.warning("Left %d lead rows out of the evaluation", skipped)
    return samples


def evaluate_scoring(
    path: str | os.PathLike, *, model: ScoringModel | None, now: dt.datetime
) -> tuple[Evaluation, list[ScoringRule]]:
    """Evaluate a model's active rules on Leads.csv at ``path``.

    Without a model the default programme's rules are built in memory, so
    a fresh install can be evaluated before ``setup_programme`` has run.
    Return the evaluation and the rules it used.
    """
    rules = active_rules(model) if model is not None else programme_rules()
    samples = load_lead_samples(path, now=now)
    evaluation, _ = evaluate_rules(rules, samples, now=now)
    logger.info(
        "Evaluated %d rules on %d leads: AUC %.3f",
        len(rules),
        evaluation.n,
        evaluation.auc,
    )
    return evaluation, rules


def programme_rules() -> list[ScoringRule]:
    """Return the default programme's scoring rules as unsaved rows."""
    from .programme import SCORING_RULES

    return [
        ScoringRule(
            name=name,
            kind=kind,
            field=field,
            operator=operator,
            value=value,
            event_type=event_type,
            points=points,
        )
        for name, kind, field, operator, value, event_type, points in SCORING_RULES
    ]


def active_rules(model: ScoringModel) -> list[ScoringRule]:
    """Return the model's active rules in a stable order."""
    return list(model.rules.filter(is_active=True).order_by("pk"))


def evaluate_rules(
    rules: Sequence[ScoringRule], samples: Sequence[Sample], *, now: dt.datetime
) -> tuple[Evaluation, list[int]]:
    """Score every sample with ``rules``; return the evaluation and the scores."""
    scores = [rule_score(rules, s.contact, s.events, now=now) for s in samples]
    return evaluate(scores, [s.converted for s in samples]), scores
