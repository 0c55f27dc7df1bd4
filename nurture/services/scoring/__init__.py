"""Fit and intent scores under every active model, and what they lead to.

``rules`` holds the pure helpers (no database), ``engine`` folds events in
and qualifies leads, ``upkeep`` persists decay and scores accounts, ``jobs``
rescores everyone after a rules change.
"""

from .engine import (
    active_models,
    current_intent,
    fold_events,
    promote_to_sql,
    qualify_contacts,
    recompute_contacts,
    rescore_new_events,
    score_contacts,
)
from .jobs import run_rescore_batch, start_rescore
from .rules import (
    compare,
    decayed,
    employee_band,
    event_matches,
    fit_hits,
    is_hand_raise,
    rule_value,
)
from .upkeep import decay_scores, refresh_account_scores

__all__ = [
    "active_models",
    "compare",
    "current_intent",
    "decay_scores",
    "decayed",
    "employee_band",
    "event_matches",
    "fit_hits",
    "fold_events",
    "is_hand_raise",
    "promote_to_sql",
    "qualify_contacts",
    "recompute_contacts",
    "refresh_account_scores",
    "rescore_new_events",
    "rule_value",
    "run_rescore_batch",
    "score_contacts",
    "start_rescore",
]
