"""The learned model on the scoring model page: weights, metrics, switch.

A mixin rather than edits to ScoringModelAdmin, so the scoring admin can
grow on its own; it adds to whatever the admin declares through the
``get_*`` hooks.
"""

from django.contrib import admin
from django.utils.html import format_html, format_html_join

from ..services.learning import describe_weights, set_use_learned
from .common import apply_to_each

# Learned values come from fit_scoring_model, never from the form.
LEARNED_READONLY = ("use_learned", "learned_summary", "learned_rules", "learned_at")
LEARNED_HIDDEN = ("learned_weights", "learned_intercept", "learned_metrics")


@admin.action(description="Score with the learned model")
def use_learned_model(modeladmin, request, queryset):
    apply_to_each(
        modeladmin,
        request,
        queryset,
        lambda model, now: set_use_learned(model, enabled=True, now=now),
        "%d scoring models now score with their learned weights.",
    )


@admin.action(description="Score with the hand-written rules")
def use_rules(modeladmin, request, queryset):
    apply_to_each(
        modeladmin,
        request,
        queryset,
        lambda model, now: set_use_learned(model, enabled=False, now=now),
        "%d scoring models now score with their rules.",
    )


class LearnedModelAdminMixin:
    """Show a scoring model's learned weights as rules and switch to them."""

    def get_list_display(self, request):
        return (*super().get_list_display(request), "use_learned")

    def get_readonly_fields(self, request, obj=None):
        return (*super().get_readonly_fields(request, obj), *LEARNED_READONLY)

    def get_exclude(self, request, obj=None):
        return (*(super().get_exclude(request, obj) or ()), *LEARNED_HIDDEN)

    def get_actions(self, request):
        actions = super().get_actions(request)
        if self.has_change_permission(request):
            for action in (use_learned_model, use_rules):
                name = action.__name__
                actions[name] = (action, name, action.short_description)
        return actions

    @admin.display(description="learned model")
    def learned_summary(self, scoring_model) -> str:
        metrics = scoring_model.learned_metrics or {}
        if not metrics:
            return "Not fitted yet: run the fit_scoring_model command."
        text = (
            f"5-fold cross-validated AUC {metrics['cv_auc']:.3f} "
            f"on {metrics['n']} outcomes from {metrics.get('source', '?')}"
        )
        if metrics.get("rules_auc") is not None:
            verdict = "beats" if metrics.get("beats_rules") else "does not beat"
            text += (
                f"; the hand-written rules reach {metrics['rules_auc']:.3f} on "
                f"the same folds, so it {verdict} them"
            )
        return text

    @admin.display(description="learned weights, as rules")
    def learned_rules(self, scoring_model) -> str:
        lines = describe_weights(scoring_model.learned_weights or {})
        if not lines:
            return "-"
        intercept = scoring_model.learned_intercept or 0.0
        return format_html(
            "<p>Starting log-odds {}; each line adds its weight when it holds. "
            "Score = 100 / (1 + e<sup>-log-odds</sup>).</p><ol>{}</ol>",
            f"{intercept:+.2f}",
            format_html_join("", "<li>{}</li>", ((line,) for line in lines)),
        )
