"""Admin for reps' work: tasks and handoffs."""

from django import forms
from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.template.response import TemplateResponse
from django.urls import path
from django.utils import timezone

from crm.admin import (
    ContactEmailSearchMixin,
    ContactVisibilityMixin,
    owner_filter,
    sees_all,
)

from ..models import (
    Handoff,
    HandoffEscalation,
    SlaPolicy,
    Task,
    WebhookDelivery,
    WebhookSubscription,
)
from ..services.handoffs import (
    RejectReason,
    accept_handoff,
    reassign_handoff,
    reject_handoff,
    validate_escalation_chain,
    validate_response_hours,
)
from ..services.sla_reports import ATTAINMENT_DAYS, rep_queue, team_sla
from ..services.tasks import complete_task
from .common import apply_to_each, time_left


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


class HandoffEscalationInline(admin.TabularInline):
    model = HandoffEscalation
    extra = 0
    can_delete = False
    fields = ("level", "action", "happened_at", "from_user", "to_user", "note")
    readonly_fields = fields

    def has_add_permission(self, request, obj=None):
        return False


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
    # Decisions and reassignment are made with the actions, which record them,
    # move the stage or the owner, notify and keep the SLA: nothing here is
    # edited by hand, or a rep could move their own deadline or give the lead
    # away unseen.
    readonly_fields = (
        "contact",
        "assignee",
        "routing_rule",
        "routing_reason",
        "sla_due_at",
        "status",
        "sla_policy",
        "created_at",
        "first_touch_at",
        "accepted_at",
        "rejected_at",
        "rejection_reason",
        "breached_at",
        "escalation_level",
        "escalated_to",
    )
    # The context snapshot is shown in sections by the template, not as JSON.
    exclude = ("context",)
    change_form_template = "admin/nurture/handoff/change_form.html"
    inlines = (HandoffEscalationInline,)
    show_full_result_count = False
    actions = ("accept", "reject_not_now", "reject_bad_fit", "reassign")

    def get_urls(self):
        pages = [
            path(
                "queue/",
                self.admin_site.admin_view(self.queue_view),
                name="nurture_handoff_queue",
            ),
            path(
                "sla/",
                self.admin_site.admin_view(self.sla_view),
                name="nurture_handoff_sla",
            ),
        ]
        return pages + super().get_urls()

    def queue_view(self, request):
        """Show the user's pending handoffs and due tasks by time left."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": "My queue",
            "queue": rep_queue(request.user, now=timezone.now()),
        }
        return TemplateResponse(request, "admin/nurture/queue.html", context)

    def sla_view(self, request):
        """Show a manager their team's SLA attainment and open breaches."""
        if not (self.has_view_permission(request) and sees_all(request)):
            raise PermissionDenied
        report = team_sla(request.user, now=timezone.now())
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": "Team SLA",
            "days": ATTAINMENT_DAYS,
            "rows": [_sla_row(str(s.rep), s) for s in report.reps],
            "total": _sla_row("Team", report.total),
        }
        return TemplateResponse(request, "admin/nurture/sla_dashboard.html", context)

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

    @admin.action(description="Reassign by routing", permissions=["reassign"])
    def reassign(self, request, queryset):
        """Give the selected handoffs to the next rep routing finds."""
        apply_to_each(
            self,
            request,
            queryset.select_related("contact", "assignee"),
            lambda handoff, now: reassign_handoff(handoff, now=now, actor=request.user),
            "Reassigned %d handoffs.",
        )

    def has_add_permission(self, request):
        # Handoffs are made by hand_off, with routing, context and an SLA.
        return False

    def has_reassign_permission(self, request):
        """Only managers reassign; a rep decides their own handoffs."""
        return self.has_change_permission(request) and sees_all(request)

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


def _sla_row(name: str, summary) -> dict:
    attainment = summary.attainment
    median = summary.median_first_touch_hours
    return {
        "name": name,
        "handoffs": summary.handoffs,
        "decided": summary.decided,
        "attainment": "-" if attainment is None else f"{attainment:.0%}",
        "median": "-" if median is None else f"{median:.1f} h",
        "open_breaches": summary.open_breaches,
    }


class SlaPolicyForm(forms.ModelForm):
    """Refuse a response time or escalation chain the SLA sweep cannot use."""

    class Meta:
        model = SlaPolicy
        fields = [
            "position",
            "name",
            "segment",
            "min_score",
            "response_business_hours",
            "escalation_chain",
            "is_active",
        ]

    def clean_response_business_hours(self):
        hours = self.cleaned_data["response_business_hours"]
        validate_response_hours(hours)
        return hours

    def clean_escalation_chain(self):
        chain = self.cleaned_data["escalation_chain"]
        validate_escalation_chain([] if chain is None else chain)
        return chain


@admin.register(SlaPolicy)
class SlaPolicyAdmin(admin.ModelAdmin):
    form = SlaPolicyForm
    list_display = (
        "position",
        "name",
        "segment",
        "min_score",
        "response_business_hours",
        "is_active",
    )
    list_display_links = ("name",)
    list_select_related = ("segment",)
    list_filter = ("is_active",)
    ordering = ("position",)


@admin.register(WebhookSubscription)
class WebhookSubscriptionAdmin(admin.ModelAdmin):
    list_display = ("name", "url", "events", "is_active", "created_at")
    list_filter = ("is_active",)


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(admin.ModelAdmin):
    """Deliveries are an outbox: read them, never edit them."""

    list_display = (
        "event",
        "subscription",
        "status",
        "attempts",
        "response_status",
        "next_attempt_at",
        "created_at",
    )
    list_filter = ("status", "event")
    list_select_related = ("subscription",)
    show_full_result_count = False

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


# Scoring and routing -------------------------------------------------------
