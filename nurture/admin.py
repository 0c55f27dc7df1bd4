"""The operator UI for cadences, rep work, scoring, routing and handoffs.

Actions only call services from nurture.services; a refusal becomes a
message naming the record and the reason, and the other records go on.
"""

import datetime as dt
from collections import Counter

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.template.response import TemplateResponse
from django.utils import timezone

from crm.admin import (
    TIMELINE_ROWS,
    ContactAdmin,
    ContactEmailSearchMixin,
    ContactVisibilityMixin,
    count_of,
    owner_filter,
    render_rows,
    sees_all,
)
from crm.models import Contact
from crm.services import StageTransitionError

from .models import (
    Cadence,
    Enrollment,
    Handoff,
    RoutingRule,
    ScoringModel,
    ScoringRule,
    Step,
    Task,
    Touch,
)
from .services.enrollment import (
    enroll_contact,
    enroll_contacts,
    pause_enrollment,
    resume_enrollment,
)
from .services.errors import NurtureError
from .services.handoffs import RejectReason, accept_handoff, reject_handoff
from .services.tasks import complete_task

# Refusals a service may raise; each becomes a message, not a server error.
REFUSALS = (NurtureError, StageTransitionError)

# Above this many contacts the enroll action enrolls in bulk and reports
# totals instead of a reason per contact.
BULK_ENROLL_FROM = 500


def apply_to_each(modeladmin, request, queryset, change, done: str) -> int:
    """Run ``change(record, now)`` on every record, reporting each refusal.

    ``done`` is the success message with a ``%d`` for the count.
    """
    now = timezone.now()
    changed = 0
    for record in queryset:
        try:
            change(record, now)
        except REFUSALS as error:
            modeladmin.message_user(
                request, f"{record}: {error}", level=messages.WARNING
            )
        else:
            changed += 1

    if changed:
        modeladmin.message_user(request, done % changed, level=messages.SUCCESS)
    return changed


def time_left(deadline: dt.datetime, now: dt.datetime) -> str:
    """Describe the time to a deadline as "2h 05m left" or "1h 10m overdue"."""
    delta = deadline - now
    minutes = int(abs(delta.total_seconds()) // 60)
    text = f"{minutes // 60}h {minutes % 60:02d}m"
    return f"{text} left" if delta.total_seconds() >= 0 else f"{text} overdue"


# Cadences -------------------------------------------------------------------


class StepInline(admin.StackedInline):
    model = Step
    extra = 0
    ordering = ("position",)
    fields = (
        ("position", "name", "channel"),
        ("wait_amount", "wait_unit"),
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
        "reenrollment",
        "created_at",
    )
    list_filter = ("is_active", "reenrollment")
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
        "detail",
    )
    list_filter = ("channel", "status", "outcome", "created_at")
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


class VisibleToMixin(ContactVisibilityMixin):
    """Limit records to the model queryset's own visible_to(user)."""

    def get_queryset(self, request):
        queryset = super(ContactVisibilityMixin, self).get_queryset(request)
        if sees_all(request):
            return queryset
        return queryset.visible_to(request.user)


class OverdueFilter(admin.SimpleListFilter):
    title = "due"
    parameter_name = "due"

    def lookups(self, request, model_admin):
        return [("overdue", "Overdue"), ("upcoming", "Not yet due")]

    def queryset(self, request, queryset):
        now = timezone.now()
        if self.value() == "overdue":
            return queryset.overdue(now)
        if self.value() == "upcoming":
            return queryset.open().filter(due_at__gte=now)
        return queryset


@admin.register(Task)
class TaskAdmin(VisibleToMixin, ContactEmailSearchMixin, admin.ModelAdmin):
    list_display = (
        "title",
        "type",
        "status",
        "due_at",
        "assignee",
        "contact",
        "outcome",
        "completed_at",
    )
    list_filter = (
        "status",
        OverdueFilter,
        "type",
        owner_filter("assignee", "assignee"),
    )
    list_select_related = ("assignee", "contact")
    search_fields = ("^title",)
    ordering = ("due_at", "id")
    date_hierarchy = "due_at"
    raw_id_fields = ("contact", "touch", "handoff", "assignee")
    readonly_fields = ("created_at", "completed_at")
    show_full_result_count = False
    actions = ("mark_done",)

    @admin.action(description="Mark done", permissions=["change"])
    def mark_done(self, request, queryset):
        """Complete the selected open tasks."""
        apply_to_each(
            self,
            request,
            queryset,
            lambda task, now: complete_task(task, now=now, actor=request.user),
            "Marked %d tasks done.",
        )


@admin.register(Handoff)
class HandoffAdmin(VisibleToMixin, ContactEmailSearchMixin, admin.ModelAdmin):
    list_display = (
        "contact",
        "assignee",
        "status",
        "sla",
        "created_at",
        "sla_due_at",
        "routing_rule",
        "rejection_reason",
    )
    list_filter = ("status", owner_filter("assignee", "assignee"), "created_at")
    list_select_related = ("contact", "assignee", "routing_rule")
    search_fields = ("contact__external_id__exact",)
    search_help_text = "A contact's whole email address or external id."
    ordering = ("sla_due_at", "id")
    raw_id_fields = ("contact", "assignee", "escalated_to", "routing_rule")
    # A decision is made with the actions, which record it and move the stage.
    readonly_fields = (
        "status",
        "created_at",
        "accepted_at",
        "rejected_at",
        "rejection_reason",
        "breached_at",
        "escalated_to",
        "context",
    )
    show_full_result_count = False
    actions = ("accept", "reject_not_now", "reject_bad_fit")

    @admin.display(description="SLA")
    def sla(self, handoff):
        if handoff.status not in Handoff.OPEN_STATUSES:
            return "-"
        return time_left(handoff.sla_due_at, timezone.now())

    @admin.action(description="Accept", permissions=["change"])
    def accept(self, request, queryset):
        """Accept the selected handoffs: their contacts become SQL."""
        apply_to_each(
            self,
            request,
            queryset.select_related("contact", "assignee"),
            lambda handoff, now: accept_handoff(handoff, now=now, actor=request.user),
            "Accepted %d handoffs.",
        )

    @admin.action(description="Reject — not now", permissions=["change"])
    def reject_not_now(self, request, queryset):
        """Reject the selected handoffs and recycle their contacts."""
        self._reject(request, queryset, RejectReason.NOT_NOW)

    @admin.action(description="Reject — bad fit", permissions=["change"])
    def reject_bad_fit(self, request, queryset):
        """Reject the selected handoffs and disqualify their contacts."""
        self._reject(request, queryset, RejectReason.BAD_FIT)

    def _reject(self, request, queryset, reason):
        apply_to_each(
            self,
            request,
            queryset.select_related("contact", "assignee"),
            lambda handoff, now: reject_handoff(
                handoff, reason=reason, now=now, actor=request.user
            ),
            "Rejected %d handoffs.",
        )


# Scoring and routing -------------------------------------------------------


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
class ScoringModelAdmin(admin.ModelAdmin):
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


class EnrollForm(forms.Form):
    cadence = forms.ModelChoiceField(
        queryset=Cadence.objects.filter(is_active=True),
        help_text="Only active cadences are offered.",
    )


class NurtureContactAdmin(ContactAdmin):
    """The crm contact admin plus enrollments, touches, tasks and handoffs."""

    readonly_fields = (
        *ContactAdmin.readonly_fields,
        "enrollment_list",
        "recent_touches",
        "task_list",
        "handoff_list",
    )
    fieldsets = (
        *ContactAdmin.fieldsets,
        ("Enrollments", {"fields": ("enrollment_list",)}),
        ("Touches", {"fields": ("recent_touches",)}),
        ("Tasks", {"fields": ("task_list",)}),
        ("Handoffs", {"fields": ("handoff_list",)}),
    )
    timeline_sections = (
        *ContactAdmin.timeline_sections,
        "Enrollments",
        "Touches",
        "Tasks",
        "Handoffs",
    )
    actions = ("enroll_in_cadence",)

    @admin.action(description="Enroll in a cadence", permissions=["change"])
    def enroll_in_cadence(self, request, queryset):
        """Ask which cadence, then enroll the selected contacts in it."""
        form = EnrollForm(request.POST if "apply" in request.POST else None)
        if not form.is_valid():
            return TemplateResponse(
                request,
                "admin/crm/contact/enroll_in_cadence.html",
                {
                    **self.admin_site.each_context(request),
                    "title": "Enroll contacts in a cadence",
                    "opts": self.model._meta,
                    "form": form,
                    "selected": request.POST.getlist(helpers.ACTION_CHECKBOX_NAME),
                    "select_across": request.POST.get("select_across", "0"),
                    "action_name": "enroll_in_cadence",
                    "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
                },
            )

        cadence = form.cleaned_data["cadence"]
        now = timezone.now()
        total = queryset.count()
        if total >= BULK_ENROLL_FROM:
            self._enroll_in_bulk(request, queryset, cadence, total, now=now)
        else:
            self._enroll_each(request, queryset, cadence, now=now)
        return None

    def _enroll_each(self, request, queryset, cadence, *, now):
        refusals = Counter()
        enrolled = 0
        for contact in queryset.order_by():
            try:
                enroll_contact(contact, cadence, now=now, actor=request.user)
            except NurtureError as error:
                refusals[error.message] += 1
            else:
                enrolled += 1

        self.message_user(
            request,
            f"Enrolled {enrolled} contacts in {cadence}.",
            level=messages.SUCCESS if enrolled else messages.INFO,
        )
        if refusals:
            why = "; ".join(f"{reason} ({n})" for reason, n in refusals.items())
            self.message_user(
                request,
                f"{sum(refusals.values())} not enrolled: {why}.",
                level=messages.WARNING,
            )

    def _enroll_in_bulk(self, request, queryset, cadence, total, *, now):
        ids = queryset.order_by().values_list("pk", flat=True)
        enrolled = enroll_contacts(ids, cadence, now=now)
        self.message_user(
            request,
            f"Enrolled {enrolled} of {total} contacts in {cadence}.",
            level=messages.SUCCESS,
        )
        if enrolled < total:
            self.message_user(
                request,
                f"{total - enrolled} not enrolled: already in this cadence "
                "before, or marked do-not-contact.",
                level=messages.WARNING,
            )

    @admin.display(description="enrollments")
    def enrollment_list(self, contact):
        if contact is None or contact.pk is None:
            return "-"
        rows = contact.enrollments.select_related("cadence").order_by(
            "-enrolled_at", "-id"
        )[:TIMELINE_ROWS]
        return render_rows(
            ("cadence", "state", "next step", "next due", "enrolled", "exit"),
            [
                (
                    e.cadence,
                    e.get_state_display(),
                    e.next_position,
                    e.next_due_at or "-",
                    e.enrolled_at,
                    e.get_exit_reason_display(),
                )
                for e in rows
            ],
        )

    @admin.display(description="recent touches")
    def recent_touches(self, contact):
        if contact is None or contact.pk is None:
            return "-"
        rows = contact.touches.select_related("step__cadence").order_by(
            "-created_at", "-id"
        )[:TIMELINE_ROWS]
        return render_rows(
            ("when", "channel", "step", "status", "outcome", "detail"),
            [
                (
                    t.created_at,
                    t.get_channel_display(),
                    t.step,
                    t.get_status_display(),
                    t.get_outcome_display(),
                    t.detail,
                )
                for t in rows
            ],
        )

    @admin.display(description="tasks")
    def task_list(self, contact):
        if contact is None or contact.pk is None:
            return "-"
        rows = contact.tasks.select_related("assignee").order_by("-due_at", "-id")[
            :TIMELINE_ROWS
        ]
        return render_rows(
            ("due", "task", "assignee", "status", "outcome"),
            [
                (
                    t.due_at,
                    t.title,
                    t.assignee or "-",
                    t.get_status_display(),
                    t.get_outcome_display(),
                )
                for t in rows
            ],
        )

    @admin.display(description="handoffs")
    def handoff_list(self, contact):
        if contact is None or contact.pk is None:
            return "-"
        rows = contact.handoffs.select_related("assignee").order_by(
            "-created_at", "-id"
        )[:TIMELINE_ROWS]
        return render_rows(
            ("created", "assignee", "status", "SLA due", "rejection"),
            [
                (
                    h.created_at,
                    h.assignee or "-",
                    h.get_status_display(),
                    h.sla_due_at,
                    h.rejection_reason or "-",
                )
                for h in rows
            ],
        )


admin.site.unregister(Contact)
admin.site.register(Contact, NurtureContactAdmin)
