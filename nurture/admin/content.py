"""Admin for content items, retargeting audiences and A/B variant results."""

import csv

from django.contrib import admin
from django.http import HttpResponse

from crm.admin import ContactVisibilityMixin

from ..models import AudienceMember, ContentItem, StepVariant
from ..services.variants import rate, with_variant_stats


@admin.register(ContentItem)
class ContentItemAdmin(admin.ModelAdmin):
    list_display = ("title", "kind", "buyer_stage", "priority", "is_active")
    list_filter = ("buyer_stage", "kind", "is_active")
    search_fields = ("title",)
    list_editable = ("priority", "is_active")


@admin.register(AudienceMember)
class AudienceMemberAdmin(ContactVisibilityMixin, admin.ModelAdmin):
    list_display = ("audience", "contact", "added_at", "removed_at")
    list_filter = ("audience",)
    list_select_related = ("contact",)
    raw_id_fields = ("contact", "touch")
    search_fields = ("=audience",)
    show_full_result_count = False
    actions = ("export_csv",)

    @admin.action(description="Export selected members as CSV")
    def export_csv(self, request, queryset):
        """Download the selected members for an ad platform upload."""
        response = HttpResponse(content_type="text/csv")
        response["Content-Disposition"] = 'attachment; filename="audience.csv"'
        writer = csv.writer(response)
        writer.writerow(["audience", "contact_id", "email", "added_at"])
        rows = queryset.filter(removed_at__isnull=True).values_list(
            "audience", "contact_id", "contact__email", "added_at"
        )
        for audience, contact_id, email, added_at in rows:
            writer.writerow([audience, contact_id, email, added_at.isoformat()])
        return response


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value:.0%}"


@admin.register(StepVariant)
class StepVariantAdmin(admin.ModelAdmin):
    """Each variant with its sends and open, click and reply rates, in one query."""

    list_display = (
        "__str__",
        "weight",
        "is_active",
        "sent",
        "open_rate",
        "click_rate",
        "reply_rate",
    )
    list_filter = ("is_active",)
    list_select_related = ("step__cadence",)
    raw_id_fields = ("step",)

    def get_queryset(self, request):
        return with_variant_stats(super().get_queryset(request))

    @admin.display(description="sent", ordering="sent_count")
    def sent(self, variant):
        return variant.sent_count

    @admin.display(description="opened")
    def open_rate(self, variant):
        return _percent(rate(variant.opened_count, variant.sent_count))

    @admin.display(description="clicked")
    def click_rate(self, variant):
        return _percent(rate(variant.clicked_count, variant.sent_count))

    @admin.display(description="replied")
    def reply_rate(self, variant):
        return _percent(rate(variant.replied_count, variant.sent_count))
