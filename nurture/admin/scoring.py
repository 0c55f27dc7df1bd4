"""Admin for scoring models and rules."""

from django.contrib import admin

from crm.admin import (
    count_of,
)

from ..models import (
    ScoringModel,
    ScoringRule,
)
from .learning import LearnedModelAdminMixin


class ScoringRuleInline(admin.TabularInline):
    model = ScoringRule
    extra = 0
    fields = (
        "name",
        "kind",
        "event_type",
        "field",
        "operator",
        "value",
        "points",
        "is_active",
    )


@admin.register(ScoringModel)
class ScoringModelAdmin(LearnedModelAdminMixin, admin.ModelAdmin):
    list_display = (
        "name",
        "is_default",
        "mql_threshold",
        "sql_threshold",
        "intent_half_life_days",
        "rule_count",
    )
    list_filter = ("is_default",)
    search_fields = ("^name",)
    ordering = ("name",)
    inlines = (ScoringRuleInline,)

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .annotate(rule_total=count_of(ScoringRule, "model"))
        )

    @admin.display(description="rules", ordering="rule_total")
    def rule_count(self, scoring_model):
        return scoring_model.rule_total


@admin.register(ScoringRule)
class ScoringRuleAdmin(admin.ModelAdmin):
    list_display = (
        "name",
        "model",
        "kind",
        "event_type",
        "field",
        "operator",
        "value",
        "points",
        "is_active",
    )
    list_filter = ("kind", "is_active", "model")
    list_select_related = ("model",)
    search_fields = ("^name",)
    ordering = ("model__name", "kind", "name")
