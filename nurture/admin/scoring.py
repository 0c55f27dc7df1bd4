"""Admin for scoring models, their rules and the rescoring they trigger.

Saving a model or a rule whose scoring changed queues a background rescore
of everyone (nurture.services.scoring.start_rescore); its progress shows on
the model's page and in the rescore job list.
"""

from django.contrib import admin, messages
from django.db.models import OuterRef, Subquery
from django.utils import timezone

from crm.admin import (
    count_of,
)

from ..models import (
    RescoreJob,
    ScoringModel,
    ScoringRule,
)
from ..services.scoring import start_rescore
from .learning import LearnedModelAdminMixin

# Model fields whose change alters scores (names and descriptions do not).
SCORING_FIELDS = {"intent_half_life_days", "is_active", "use_learned"}


def progress(job: RescoreJob | None) -> str:
    """Describe a rescore job as "running: 1,500 of 6,000 (25%)"."""
    if job is None:
        return "never rescored"
    share = min(job.processed * 100 // job.total, 100) if job.total else 100
    return (
        f"{job.get_status_display().lower()}: {job.processed:,} of "
        f"{job.total:,} ({share}%)"
    )


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
        "max_points",
        "cap_period_days",
        "is_active",
    )


@admin.register(ScoringModel)
class ScoringModelAdmin(LearnedModelAdminMixin, admin.ModelAdmin):
    list_display = (
        "name",
        "is_default",
        "is_active",
        "mql_threshold",
        "sql_threshold",
        "intent_half_life_days",
        "rule_count",
        "rescore_progress",
    )
    list_filter = ("is_default", "is_active")
    search_fields = ("^name",)
    ordering = ("name",)
    inlines = (ScoringRuleInline,)
    readonly_fields = ("rules_changed_at", "rescore_progress")
    actions = ("rescore_everyone",)

    def get_queryset(self, request):
        latest = RescoreJob.objects.filter(model=OuterRef("pk")).order_by(
            "-created_at", "-pk"
        )
        return (
            super()
            .get_queryset(request)
            .annotate(
                rule_total=count_of(ScoringRule, "model"),
                job_status=Subquery(latest.values("status")[:1]),
                job_processed=Subquery(latest.values("processed")[:1]),
                job_total=Subquery(latest.values("total")[:1]),
            )
        )

    @admin.display(description="rules", ordering="rule_total")
    def rule_count(self, scoring_model):
        return scoring_model.rule_total

    @admin.display(description="last rescore")
    def rescore_progress(self, scoring_model):
        if scoring_model.pk is None:
            return "-"
        if not hasattr(scoring_model, "job_status"):
            # The change page loads the model without the list's annotations.
            return progress(scoring_model.rescore_jobs.first())
        if scoring_model.job_status is None:
            return progress(None)
        job = RescoreJob(
            status=scoring_model.job_status,
            processed=scoring_model.job_processed,
            total=scoring_model.job_total,
        )
        return progress(job)

    def save_related(self, request, form, formsets, change):
        super().save_related(request, form, formsets, change)
        rules_changed = any(formset.has_changed() for formset in formsets)
        if rules_changed or SCORING_FIELDS & set(form.changed_data):
            job = start_rescore(form.instance, now=timezone.now())
            self.message_user(
                request,
                f"Scores under {form.instance} are being recomputed for "
                f"{job.total:,} contacts in the background.",
                level=messages.INFO,
            )

    @admin.action(description="Rescore everyone under the selected models")
    def rescore_everyone(self, request, queryset):
        now = timezone.now()
        for scoring_model in queryset:
            start_rescore(scoring_model, now=now)
        self.message_user(
            request,
            f"Rescoring queued for {len(queryset)} models.",
            level=messages.SUCCESS,
        )


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
        "max_points",
        "is_active",
    )
    list_filter = ("kind", "is_active", "model")
    list_select_related = ("model",)
    search_fields = ("^name",)
    ordering = ("model__name", "kind", "name")

    def save_related(self, request, form, formsets, change):
        super().save_related(request, form, formsets, change)
        if form.has_changed():
            start_rescore(form.instance.model, now=timezone.now())
            self.message_user(
                request,
                f"Scores under {form.instance.model} are being recomputed in "
                "the background.",
                level=messages.INFO,
            )

    def delete_model(self, request, obj):
        super().delete_model(request, obj)
        start_rescore(obj.model, now=timezone.now())


@admin.register(RescoreJob)
class RescoreJobAdmin(admin.ModelAdmin):
    """Background rescoring runs: created by rules changes, read here."""

    list_display = (
        "created_at",
        "model",
        "status",
        "progress_shown",
        "started_at",
        "finished_at",
    )
    list_filter = ("status", "model")
    list_select_related = ("model",)
    ordering = ("-created_at",)
    show_full_result_count = False

    @admin.display(description="progress")
    def progress_shown(self, job):
        return progress(job)

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False
