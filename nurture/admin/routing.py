"""Admin for routing rules, teams and segments, with a routing dry run."""

from django import forms
from django.contrib import admin
from django.core.exceptions import PermissionDenied, ValidationError
from django.template.response import TemplateResponse
from django.urls import path
from django.utils import timezone

from crm.admin import count_of
from crm.models import Contact, normalise_email

from ..models import Handoff, RoutingRule, Segment, Team, TeamMembership
from ..services.routing import (
    route_contact,
    validate_rule_field,
    validate_rule_region,
)
from ..services.segments import (
    SegmentError,
    segment_queryset,
    validate_segment_filters,
)

Match = RoutingRule.Match
Strategy = RoutingRule.Strategy
TEAM_STRATEGIES = {Strategy.ROUND_ROBIN, Strategy.WEIGHTED, Strategy.LEAST_LOADED}


# Routing rules -----------------------------------------------------------------


class RoutingRuleForm(forms.ModelForm):
    """Refuse a rule that could never assign anyone, naming the missing field."""

    class Meta:
        model = RoutingRule
        fields = [
            "position",
            "name",
            "is_active",
            "match",
            "field",
            "values",
            "segment",
            "strategy",
            "rep",
            "team",
            "region",
        ]

    def clean_field(self):
        name = self.cleaned_data["field"].strip()
        validate_rule_field(name)
        return name

    def clean(self):
        data = super().clean()
        match, strategy = data.get("match"), data.get("strategy")
        if match == Match.SEGMENT and not data.get("segment"):
            self.add_error("segment", "A segment rule needs a segment.")
        if match == Match.NAMED_ACCOUNT:
            # The account owner is the assignee; nothing else to check.
            return data
        if strategy == Strategy.SINGLE and not data.get("rep"):
            self.add_error("rep", "A one-rep rule needs a rep.")
        if strategy in TEAM_STRATEGIES and not data.get("team"):
            self.add_error("team", "A team strategy needs a team.")
        if strategy == Strategy.REGION_LEAST_LOADED and data.get("region"):
            try:
                validate_rule_region(data["region"])
            except ValidationError as error:
                self.add_error("region", error)
        return data


@admin.register(RoutingRule)
class RoutingRuleAdmin(admin.ModelAdmin):
    form = RoutingRuleForm
    change_list_template = "admin/nurture/routingrule/change_list.html"
    list_display = (
        "position",
        "name",
        "match",
        "condition",
        "strategy",
        "assigns_to",
        "is_active",
        "handoff_count",
    )
    list_display_links = ("position", "name")
    list_filter = ("is_active", "match", "strategy")
    list_select_related = ("rep__user", "team", "segment")
    search_fields = ("^name", "=region")
    ordering = ("position",)
    autocomplete_fields = ("rep", "team", "segment")
    fieldsets = (
        (None, {"fields": ("position", "name", "is_active")}),
        (
            "Which contacts",
            {
                "fields": ("match", "field", "values", "segment"),
                "description": "Named account: a tier-1 account's owner gets "
                "the lead. Field: the contact field (country, city, "
                "attributes.product, account__country) is one of the "
                "comma-separated values; a blank field matches everyone. "
                "Segment: the contact is in the segment. Always: a fallback.",
            },
        ),
        (
            "Who gets them",
            {
                "fields": ("strategy", "rep", "team", "region"),
                "description": "Reps who are inactive, out of office today or "
                "at capacity are skipped; a rule that finds nobody passes the "
                "lead to the next rule.",
            },
        ),
    )

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .annotate(handoff_total=count_of(Handoff, "routing_rule"))
        )

    def get_urls(self):
        dry_run = path(
            "test/",
            self.admin_site.admin_view(self.test_routing_view),
            name="nurture_routingrule_test",
        )
        return [dry_run, *super().get_urls()]

    @admin.display(description="condition")
    def condition(self, rule):
        if rule.match == Match.SEGMENT:
            return f"in {rule.segment}" if rule.segment_id else "-"
        if rule.match == Match.FIELD:
            return f"{rule.field} in {rule.values}" if rule.field else "everyone"
        return "-"

    @admin.display(description="assigns to")
    def assigns_to(self, rule):
        if rule.match == Match.NAMED_ACCOUNT:
            return "account owner"
        if rule.strategy in TEAM_STRATEGIES:
            return rule.team or "-"
        if rule.strategy == Strategy.SINGLE:
            return rule.rep or "-"
        fixed = f"{rule.rep}, else " if rule.rep_id else ""
        return f"{fixed}region {rule.region or '(blank)'}"

    @admin.display(description="handoffs", ordering="handoff_total")
    def handoff_count(self, rule):
        return rule.handoff_total

    def test_routing_view(self, request):
        """Show who would get a contact's lead and why, changing nothing."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        form = DryRunForm(request.GET or None, user=request.user)
        decision = None
        if form.is_valid():
            decision = route_contact(form.cleaned_data["contact"], now=timezone.now())
        return TemplateResponse(
            request,
            "admin/nurture/routingrule/test_routing.html",
            {
                **self.admin_site.each_context(request),
                "title": "Test routing",
                "opts": self.model._meta,
                "form": form,
                "contact": form.cleaned_data.get("contact") if decision else None,
                "decision": decision,
            },
        )


class DryRunForm(forms.Form):
    contact = forms.CharField(label="Contact id or email", max_length=254, strip=True)

    def __init__(self, *args, user, **kwargs):
        super().__init__(*args, **kwargs)
        self.user = user

    def clean_contact(self):
        value = self.cleaned_data["contact"]
        contacts = Contact.objects.visible_to(self.user).select_related("account")
        if value.isdigit():
            contact = contacts.filter(pk=int(value)).first()
        else:
            contact = contacts.filter(email=normalise_email(value)).first()
        if contact is None:
            raise forms.ValidationError(f"No contact with id or email {value!r}.")
        return contact


# Teams --------------------------------------------------------------------------


class TeamMembershipInline(admin.TabularInline):
    model = TeamMembership
    extra = 1
    autocomplete_fields = ("rep",)
    fields = ("rep", "weight", "assigned", "is_active")
    verbose_name = "member"
    verbose_name_plural = (
        "Members (round robin gives the next lead to the member furthest "
        "below their share; lower 'assigned' to rebalance a new member)"
    )

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("rep__user")


@admin.register(Team)
class TeamAdmin(admin.ModelAdmin):
    list_display = ("name", "manager", "member_count", "assignments")
    list_select_related = ("manager__user",)
    search_fields = ("^name",)
    autocomplete_fields = ("manager",)
    readonly_fields = ("assignments",)
    inlines = (TeamMembershipInline,)

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .annotate(member_total=count_of(TeamMembership, "team", is_active=True))
        )

    @admin.display(description="members", ordering="member_total")
    def member_count(self, team):
        return team.member_total


# Segments -----------------------------------------------------------------------


class SegmentForm(forms.ModelForm):
    class Meta:
        model = Segment
        fields = ["name", "description", "filters"]

    def clean_filters(self):
        filters = self.cleaned_data["filters"]
        try:
            validate_segment_filters(filters)
        except SegmentError as error:
            raise forms.ValidationError(error.message) from error
        return filters


@admin.register(Segment)
class SegmentAdmin(admin.ModelAdmin):
    form = SegmentForm
    list_display = ("name", "description", "rule_count")
    search_fields = ("^name",)
    readonly_fields = ("contact_count",)
    fields = ("name", "description", "filters", "contact_count")

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .annotate(rule_total=count_of(RoutingRule, "segment"))
        )

    @admin.display(description="routing rules", ordering="rule_total")
    def rule_count(self, segment):
        return segment.rule_total

    @admin.display(description="contacts now in the segment")
    def contact_count(self, segment):
        # One count query, on the detail page only.
        if segment.pk is None:
            return "-"
        try:
            return segment_queryset(segment).count()
        except SegmentError as error:
            return f"invalid: {error.message}"
