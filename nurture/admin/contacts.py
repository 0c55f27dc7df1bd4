"""The contact admin, extended with nurture actions and history."""

from collections import Counter

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.template.response import TemplateResponse
from django.utils import timezone

from crm.admin import (
    TIMELINE_ROWS,
    ContactAdmin,
    render_rows,
)
from crm.models import Contact

from ..models import (
    Cadence,
)
from ..services.enrollment import (
    enroll_contact,
    enroll_contacts,
)
from ..services.errors import NurtureError
from .common import BULK_ENROLL_FROM


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
