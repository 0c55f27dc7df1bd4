"""Admin for routing rules."""

from django.contrib import admin

from crm.admin import (
    count_of,
)

from ..models import (
    Handoff,
    RoutingRule,
)


@admin.register(RoutingRule)
class RoutingRuleAdmin(admin.ModelAdmin):
    list_display = (
        "position",
        "name",
        "field",
        "values",
        "region",
        "rep",
        "is_active",
        "handoff_count",
    )
    list_filter = ("is_active",)
    list_select_related = ("rep__user",)
    search_fields = ("^name", "=region")
    ordering = ("position",)
    autocomplete_fields = ("rep",)

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .annotate(handoff_total=count_of(Handoff, "routing_rule"))
        )

    @admin.display(description="handoffs", ordering="handoff_total")
    def handoff_count(self, rule):
        return rule.handoff_total


# The contact page, with the nurture side of its timeline ---------------------
