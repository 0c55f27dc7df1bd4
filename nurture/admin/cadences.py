"""Admin for cadences, steps, enrollments and touches."""

from django.contrib import admin

from crm.admin import (
    ContactEmailSearchMixin,
    ContactVisibilityMixin,
    count_of,
    owner_filter,
)

from ..models import (
    Cadence,
    Enrollment,
    Step,
    Touch,
)
from ..services.enrollment import (
    pause_cadence,
    pause_enrollment,
    resume_cadence,
    resume_enrollment,
)
from .common import apply_to_each


class StepInline(admin.StackedInline):
    model = Step
    extra = 0
    ordering = ("position",)
    fields = (
        ("position", "name", "channel"),
        ("wait_amount", "wait_unit", "send_at_local"),
        "subject",
        "body",
        "task_instructions",
    )


@admin.register(Cadence)
class CadenceAdmin(admin.ModelAdmin):
    list_display = (
        "name",
        "is_active",
        "step_count",
        "active_enrollment_count",
        "send_window_start",
        "send_window_end",
        "skip_holidays",
        "paused_at",
        "reenrollment",
        "created_at",
    )
    list_filter = ("is_active", "reenrollment", "skip_holidays")
    readonly_fields = ("paused_at",)
    actions = ("pause", "resume")
    search_fields = ("^name",)
    ordering = ("name",)
    raw_id_fields = ("sender",)
    inlines = (StepInline,)

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .annotate(
                step_total=count_of(Step, "cadence"),
                active_total=count_of(
                    Enrollment, "cadence", state=Enrollment.State.ACTIVE
                ),
            )
        )

    @admin.display(description="steps", ordering="step_total")
    def step_count(self, cadence):
        return cadence.step_total

    @admin.display(description="active enrollments", ordering="active_total")
    def active_enrollment_count(self, cadence):
        return cadence.active_total

    @admin.action(description="Pause sending", permissions=["change"])
    def pause(self, request, queryset):
        """Hold every enrollment of the selected cadences where it is."""
        apply_to_each(
            self,
            request,
            queryset,
            lambda cadence, now: pause_cadence(cadence, now=now),
            "Paused %d cadences.",
        )

    @admin.action(description="Resume sending", permissions=["change"])
    def resume(self, request, queryset):
        """Resume the selected cadences, each wait kept as it was."""
        apply_to_each(
            self,
            request,
            queryset,
            lambda cadence, now: resume_cadence(cadence, now=now),
            "Resumed %d cadences.",
        )


@admin.register(Step)
class StepAdmin(admin.ModelAdmin):
    list_display = (
        "__str__",
        "cadence",
        "position",
        "channel",
        "wait_amount",
        "wait_unit",
        "touch_count",
    )
    list_filter = ("channel", "cadence")
    list_select_related = ("cadence",)
    search_fields = ("^name", "^cadence__name")
    ordering = ("cadence__name", "position")

    def get_queryset(self, request):
        return (
            super().get_queryset(request).annotate(touch_total=count_of(Touch, "step"))
        )

    @admin.display(description="touches", ordering="touch_total")
    def touch_count(self, step):
        return step.touch_total


# Enrollments and touches ----------------------------------------------------


@admin.register(Enrollment)
class EnrollmentAdmin(
    ContactVisibilityMixin, ContactEmailSearchMixin, admin.ModelAdmin
):
    list_display = (
        "contact",
        "cadence",
        "state",
        "next_position",
        "next_due_at",
        "enrolled_at",
        "exit_reason",
    )
    list_filter = ("state", "exit_reason", "cadence", owner_filter("contact__owner"))
    list_select_related = ("contact", "cadence")
    search_fields = ("contact__external_id__exact",)
    search_help_text = "A contact's whole email address or external id."
    ordering = ("-enrolled_at", "-id")
    raw_id_fields = ("contact", "enrolled_by")
    readonly_fields = ("paused_at", "ended_at", "claimed_until")
    show_full_result_count = False
    actions = ("pause", "resume")

    @admin.action(description="Pause", permissions=["change"])
    def pause(self, request, queryset):
        """Pause the selected active enrollments."""
        apply_to_each(
            self,
            request,
            queryset.select_related("contact", "cadence"),
            lambda enrollment, now: pause_enrollment(enrollment, now=now),
            "Paused %d enrollments.",
        )

    @admin.action(description="Resume", permissions=["change"])
    def resume(self, request, queryset):
        """Resume the selected paused enrollments where they stopped."""
        apply_to_each(
            self,
            request,
            queryset.select_related("contact", "cadence"),
            lambda enrollment, now: resume_enrollment(enrollment, now=now),
            "Resumed %d enrollments.",
        )


class RetryFilter(admin.SimpleListFilter):
    """Failed touches split by whether another attempt is coming."""

    title = "retries"
    parameter_name = "retry"

    def lookups(self, request, model_admin):
        return (
            ("pending", "Failed, retry pending"),
            ("given_up", "Failed for good"),
        )

    def queryset(self, request, queryset):
        failed = queryset.filter(status=Touch.Status.FAILED)
        if self.value() == "pending":
            return failed.filter(retry_at__isnull=False)
        if self.value() == "given_up":
            return failed.filter(retry_at__isnull=True)
        return queryset


@admin.register(Touch)
class TouchAdmin(ContactVisibilityMixin, ContactEmailSearchMixin, admin.ModelAdmin):
    """Touches are written by the dispatcher; here they are only read."""

    list_display = (
        "created_at",
        "channel",
        "status",
        "outcome",
        "contact",
        "step",
        "sent_at",
        "attempts",
        "retry_at",
        "local_zone",
        "detail",
    )
    list_filter = (
        "channel",
        "status",
        RetryFilter,
        "outcome",
        "created_at",
    )
    list_select_related = ("contact", "step__cadence")
    search_fields = ("provider_message_id__exact", "message_id__exact")
    search_help_text = "A contact's whole email address or a message id."
    ordering = ("-created_at", "-id")
    show_full_result_count = False

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


# Rep work ------------------------------------------------------------------
