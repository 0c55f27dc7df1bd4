"""A learned scoring model: logistic regression on closed-loop outcomes.

Features are what is known when a lead arrives: how it came (origin,
source), who it is (occupation, specialization, city, country), the
do-not-email and do-not-call flags, the kinds of events it brought and its
web activity (log counts plus thresholds). Sales' own verdicts never become
features: only the names below are read, and the outcome a source system
recorded is hidden from every contact read.

The weights are stored on the ScoringModel as ``{feature: weight}``, so
``learned_score`` is a dot product and a logistic, with no library needed
at scoring time. scikit-learn is imported only to fit.
"""

import dataclasses
import datetime as dt
import logging
import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from crm.models import Contact, EngagementEvent, Opportunity
from nurture.models import Handoff, ScoringModel

from .errors import NurtureError
from .evaluation import Sample, active_rules, roc_auc, rule_score
from .fields import contact_field_value

logger = logging.getLogger(__name__)

# Contact fields that become one feature per value: field -> readable name.
CATEGORICAL_FIELDS = {
    "lead_origin": "Lead origin",
    "lead_source": "Lead source",
    "occupation": "Occupation",
    "specialization": "Specialization",
    "city": "City",
    "country": "Country",
}
FLAG_FIELDS = {
    "do_not_email": "Asked not to be emailed",
    "do_not_call": "Asked not to be called",
}
# Web activity properties, each as log(1 + value) and as "at least" steps,
# since time on site does not raise the odds evenly.
WEB_STEPS = {
    "seconds_on_site": (1, 60, 200, 400, 600, 900, 1200, 1500),
    "visits": (1, 2, 3, 5, 8, 12),
    "pages_per_visit": (1, 2, 3, 4, 6),
}
WEB_NAMES = {
    "seconds_on_site": "Seconds on site",
    "visits": "Visits",
    "pages_per_visit": "Pages per visit",
}
NO_WEB_ACTIVITY = "web_activity=none"
HOME_COUNTRY = "India"

# Regularisation strengths tried by cross-validation (smaller = stronger).
C_GRID = (0.03, 0.1, 0.3, 1.0, 3.0)
FOLDS = 5
INNER_FOLDS = 3
# A logistic's input beyond this is a certainty either way.
MAX_LOGIT = 30.0


@dataclasses.dataclass
class LearnedFit:
    """A fitted model's weights and how it cross-validated."""

    weights: dict[str, float]
    intercept: float
    c: float
    cv_auc: float
    rules_auc: float | None
    n: int
    positives: int

    @property
    def beats_rules(self) -> bool | None:
        if self.rules_auc is None:
            return None
        return self.cv_auc > self.rules_auc


def contact_features(contact: Contact, events: Iterable[Mapping]) -> dict[str, float]:
    """Return the named feature values of a contact and its events.

    Events are mappings with ``type`` and ``properties``; web activity
    counts take the largest value reported.
    """
    return summary_features(contact, summarize_events(events))


def summarize_events(
    events: Iterable[Mapping], summary: Mapping | None = None
) -> dict[str, Any]:
    """Fold events into the little the features need to know about them.

    The summary (``types``: event types seen, ``web``: the largest value
    of each web activity count) is plain JSON, so the scoring engine can
    store it with a contact's score and fold new events in as they come
    instead of rereading the contact's history. A new summary is returned.
    """
    types = list((summary or {}).get("types", ()))
    web = dict((summary or {}).get("web", {}))
    for event in events:
        if event["type"] != EngagementEvent.Type.WEB_ACTIVITY:
            if event["type"] not in types:
                types.append(event["type"])
            continue
        for name in WEB_STEPS:
            number = _number((event["properties"] or {}).get(name))
            if number is not None:
                web[name] = max(web.get(name, number), number)
    return {"types": types, "web": web}


def summary_features(contact: Contact, summary: Mapping) -> dict[str, float]:
    """Return the feature values of a contact and its events' summary."""
    features: dict[str, float] = {}
    for field in CATEGORICAL_FIELDS:
        value = contact_field_value(contact, field)
        if field == "country":
            value = _country_bucket(value)
        features[f"{field}={_text(value)}"] = 1.0
    for field in FLAG_FIELDS:
        if contact_field_value(contact, field) is True:
            features[field] = 1.0

    for event_type in summary.get("types", ()):
        features[f"event={event_type}"] = 1.0
    web = summary.get("web") or {}
    if not web:
        features[NO_WEB_ACTIVITY] = 1.0
    for name, number in web.items():
        features[f"log1p:{name}"] = math.log1p(max(number, 0.0))
        for step in WEB_STEPS[name]:
            if number >= step:
                features[f"{name}>={step}"] = 1.0
    return features


def learned_score(model: ScoringModel, features: Mapping[str, float]) -> float:
    """Return the learned model's conversion probability times 100 (0..100).

    ``features`` comes from ``contact_features``; names the model has no
    weight for count as zero. A model never fitted scores every lead 0.
    """
    if model.learned_intercept is None:
        return 0.0
    weights = model.learned_weights or {}
    logit = model.learned_intercept + sum(
        weights.get(name, 0.0) * value for name, value in features.items()
    )
    logit = max(-MAX_LOGIT, min(MAX_LOGIT, logit))
    return 100.0 / (1.0 + math.exp(-logit))


def top_contributions(
    model: ScoringModel, features: Mapping[str, float], *, limit: int = 5
) -> list[tuple[str, float]]:
    """Return the features that moved the learned score most, readable.

    Each is (condition, log-odds it added), largest effect first.
    """
    weights = model.learned_weights or {}
    effects = [
        (name, weights[name] * value)
        for name, value in features.items()
        if weights.get(name) and value
    ]
    effects.sort(key=lambda item: (-abs(item[1]), item[0]))
    return [
        (describe_feature(name), round(effect, 2)) for name, effect in effects[:limit]
    ]


def fit_learned_model(
    features: Sequence[Mapping[str, float]],
    labels: Sequence[bool],
    *,
    rule_scores: Sequence[float] | None = None,
    random_state: int = 0,
) -> LearnedFit:
    """Fit an L2-regularised logistic regression and cross-validate it.

    Five stratified folds: on each, C is chosen by an inner cross-validation
    on the training part and the AUC is measured on the held-out part; the
    hand-written rules' scores, when given, are measured on the same folds.
    The stored weights come from a final fit on every sample.
    """
    from sklearn.feature_extraction import DictVectorizer
    from sklearn.model_selection import StratifiedKFold
    from threadpoolctl import threadpool_limits

    positives = sum(1 for label in labels if label)
    if min(positives, len(labels) - positives) < FOLDS:
        raise NurtureError(
            f"need at least {FOLDS} converted and {FOLDS} not converted "
            f"outcomes to fit, got {positives} and {len(labels) - positives}",
            field="outcomes",
        )

    vectorizer = DictVectorizer(sparse=False)
    x = vectorizer.fit_transform(features)
    y = [int(bool(label)) for label in labels]
    folds = StratifiedKFold(FOLDS, shuffle=True, random_state=random_state)

    # The problem is small: threaded BLAS only fights the other workers on
    # the machine, and made a fit several times slower when measured.
    with threadpool_limits(limits=1):
        return _cross_validate(x, y, folds, vectorizer, rule_scores, random_state)


def _cross_validate(x, y, folds, vectorizer, rule_scores, random_state) -> LearnedFit:
    """Measure both scorers on each fold, then fit the stored weights on all."""
    model_aucs, rules_aucs = [], []
    for train, test in folds.split(x, y):
        fold_model, _ = _fit_with_best_c(
            x[train], [y[i] for i in train], random_state=random_state
        )
        predicted = fold_model.predict_proba(x[test])[:, 1]
        model_aucs.append(roc_auc(list(predicted), [y[i] for i in test]))
        if rule_scores is not None:
            rules_aucs.append(
                roc_auc([rule_scores[i] for i in test], [y[i] for i in test])
            )

    final, c = _fit_with_best_c(x, y, random_state=random_state)
    names = vectorizer.get_feature_names_out()
    weights = {
        str(name): round(float(weight), 4)
        for name, weight in zip(names, final.coef_[0], strict=True)
        if round(float(weight), 4) != 0.0
    }
    return LearnedFit(
        weights=weights,
        intercept=round(float(final.intercept_[0]), 4),
        c=c,
        cv_auc=sum(model_aucs) / len(model_aucs),
        rules_auc=sum(rules_aucs) / len(rules_aucs) if rules_aucs else None,
        n=len(y),
        positives=sum(y),
    )


def fit_scoring_model(
    model: ScoringModel,
    samples: Sequence[Sample],
    *,
    now: dt.datetime,
    source: str,
    random_state: int = 0,
) -> LearnedFit:
    """Fit the learned weights of ``model`` on samples and store them.

    The model's own active rules are cross-validated on the same folds, so
    the stored metrics say whether the learned weights beat them. The
    switch ``use_learned`` is left as the operator set it.
    """
    rules = active_rules(model)
    fit = fit_learned_model(
        [contact_features(s.contact, s.events) for s in samples],
        [s.converted for s in samples],
        rule_scores=[rule_score(rules, s.contact, s.events, now=now) for s in samples]
        if rules
        else None,
        random_state=random_state,
    )

    model.learned_weights = fit.weights
    model.learned_intercept = fit.intercept
    model.learned_at = now
    model.learned_metrics = {
        "cv_auc": round(fit.cv_auc, 4),
        "rules_auc": None if fit.rules_auc is None else round(fit.rules_auc, 4),
        "beats_rules": fit.beats_rules,
        "n": fit.n,
        "positives": fit.positives,
        "c": fit.c,
        "folds": FOLDS,
        "source": source,
        "fitted_at": now.isoformat(),
    }
    model.save(
        update_fields=[
            "learned_weights",
            "learned_intercept",
            "learned_at",
            "learned_metrics",
        ]
    )
    logger.info(
        "Fitted learned weights for scoring model %s: cv AUC %.3f on %d outcomes",
        model.pk,
        fit.cv_auc,
        fit.n,
    )
    return fit


def set_use_learned(model: ScoringModel, *, enabled: bool, now: dt.datetime) -> None:
    """Switch a model between its learned weights and its hand-written rules.

    A real switch rescores everyone under the model in the background, as
    a rules change does, so stored totals follow the scorer in use.
    """
    from .scoring.jobs import start_rescore

    if enabled and model.learned_intercept is None:
        raise NurtureError(
            "has no learned weights yet: run fit_scoring_model first",
            field="use_learned",
        )
    if model.use_learned == enabled:
        return
    model.use_learned = enabled
    model.save(update_fields=["use_learned"])
    start_rescore(model, now=now)


def closed_loop_samples() -> list[Sample]:
    """Collect contacts with a known sales outcome, labelled, with their events.

    A won opportunity is positive and a lost one negative; without a closed
    opportunity an accepted handoff is positive and one rejected as a bad
    fit negative. Four queries, however many contacts.
    """
    labels: dict[int, bool] = {}
    handoffs = Handoff.objects.filter(
        status__in=[Handoff.Status.ACCEPTED, Handoff.Status.REJECTED]
    ).values_list("contact_id", "status", "rejection_reason")
    for contact_id, status, reason in handoffs:
        if status == Handoff.Status.ACCEPTED:
            labels[contact_id] = True
        elif reason.startswith("bad_fit"):
            labels.setdefault(contact_id, False)
    # Opportunities are the later verdict, so they override handoffs.
    opportunities = Opportunity.objects.filter(
        contact__isnull=False,
        stage__in=[Opportunity.Stage.WON, Opportunity.Stage.LOST],
    ).values_list("contact_id", "stage")
    closed: dict[int, bool] = {}
    for contact_id, stage in opportunities:
        closed[contact_id] = closed.get(contact_id) or stage == Opportunity.Stage.WON
    labels.update(closed)

    events: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for event in EngagementEvent.objects.filter(contact_id__in=list(labels)).values(
        "contact_id", "type", "properties", "occurred_at"
    ):
        events[event["contact_id"]].append(event)
    contacts = Contact.objects.filter(pk__in=list(labels)).order_by("pk")
    return [Sample(c, events[c.pk], labels[c.pk]) for c in contacts]


def describe_weights(weights: Mapping[str, float]) -> list[str]:
    """Render weights as readable rules, largest effect first."""
    ranked = sorted(weights.items(), key=lambda item: (-abs(item[1]), item[0]))
    return [f"{describe_feature(name)}: {weight:+.2f}" for name, weight in ranked]


def describe_feature(name: str) -> str:
    """Turn a feature name into the condition it stands for."""
    if name == NO_WEB_ACTIVITY:
        return "No web activity recorded"
    if name in FLAG_FIELDS:
        return FLAG_FIELDS[name]
    if name.startswith("log1p:"):
        field = name.removeprefix("log1p:")
        return f"log(1 + {WEB_NAMES.get(field, field).lower()}), per unit"
    if ">=" in name:
        field, step = name.split(">=", 1)
        return f"{WEB_NAMES.get(field, field)} at least {step}"
    field, _, value = name.partition("=")
    if field == "event":
        label = EngagementEvent.Type(value).label if _known_type(value) else value
        return f"{label} event recorded"
    readable = CATEGORICAL_FIELDS.get(field, field)
    return f"{readable} is {value}" if value else f"{readable} is blank"


def _fit_with_best_c(x, y: Sequence[int], *, random_state: int):
    """Fit on ``x``, ``y`` with the C that cross-validates best on them."""
    from sklearn.model_selection import StratifiedKFold

    folds = list(
        StratifiedKFold(INNER_FOLDS, shuffle=True, random_state=random_state).split(
            x, y
        )
    )
    best_c, best_auc = C_GRID[0], -1.0
    for c in C_GRID:
        aucs = []
        for train, test in folds:
            fitted = _regression(c).fit(x[train], [y[i] for i in train])
            aucs.append(
                roc_auc(list(fitted.predict_proba(x[test])[:, 1]), [y[i] for i in test])
            )
        if sum(aucs) / len(aucs) > best_auc:
            best_c, best_auc = c, sum(aucs) / len(aucs)
    return _regression(best_c).fit(x, y), best_c


def _regression(c: float):
    from sklearn.linear_model import LogisticRegression

    # L2 is the default penalty. Newton-Cholesky solves this small, dense
    # problem in a few iterations where lbfgs needs hundreds.
    return LogisticRegression(C=c, solver="newton-cholesky", max_iter=200)


def _country_bucket(value: Any) -> str:
    text = _text(value)
    if not text:
        return ""
    return HOME_COUNTRY if text.casefold() == HOME_COUNTRY.casefold() else "abroad"


def _text(value: Any) -> str:
    return "" if value is None else str(value).strip()


def _number(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _known_type(value: str) -> bool:
    return value in EngagementEvent.Type.values
