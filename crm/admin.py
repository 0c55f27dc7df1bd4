"""The operator UI for people, companies and what they did.

Changelists are built for a million contacts: filters carry fixed choices,
searches hit indexed exact or prefix lookups, the full result count is
skipped and every column comes from the one page query.
"""

from django.apps import apps
from django.contrib import admin
from django.db.models import (
    Count,
    FloatField,
    IntegerField,
    OuterRef,
    Q,
    Subquery,
)
from django.db.models.functions import Coalesce
from django.utils import timezone
from django.utils.html import format_html, format_html_join

from .models import (
    Account,
    Contact,
    EngagementEvent,
    Opportunity,
    Rep,
    StageChange,
    can_see_all,
    normalise_email,
)
from .services import decayed

# How many rows of each history a contact's page shows.
TIMELINE_ROWS = 20


def sees_all(request) -> bool:
    """Say whether the user behind a request sees every record.

    The answer costs a query, so it is kept on the request for the rest of it.
    """
    if not hasattr(request, "_nurture_sees_all"):
        request._nurture_sees_all = can_see_all(request.user)
    return request._nurture_sees_all


def default_half_life() -> Subquery:
    """Read the default scoring model's half-life inside the page query.

    A scalar subquery: the database evaluates it once, and list columns can
    decay intent without a query of their own.
    """
    models = apps.get_model("nurture", "ScoringModel").objects
    return Subquery(
        models.filter(is_default=True).values("intent_half_life_days")[:1],
        output_field=FloatField(),
    )


def count_of(model, fk: str, **filters) -> Coalesce:
    """Count a related model's rows per outer row in a correlated subquery.

    A subquery, unlike Count() over a join, neither multiplies rows when two
    counts are annotated nor groups the whole page query.
    """
    rows = (
        model.objects.filter(**{fk: OuterRef("pk")}, **filters)
        .order_by()
        .values(fk)
        .annotate(n=Count("pk"))
        .values("n")
    )
    return Coalesce(Subquery(rows, output_field=IntegerField()), 0)


def render_rows(headers: tuple[str, ...], rows) -> str:
    """Render a small read-only table for a change page section."""
    if not rows:
        return "-"
    head = format_html_join("", "<th>{}</th>", ((h,) for h in headers))
    body = format_html_join(
        "",
        "<tr>{}</tr>",
        (
            (format_html_join("", "<td>{}</td>", ((cell,) for cell in row)),)
            for row in rows
        ),
    )
    return format_html("<table><thead><tr>{}</tr></thead>{}</table>", head, body)


def owner_filter(field: str, title: str = "owner"):
    """Build a list filter offering the reps, not a SELECT DISTINCT of owners.

    ``field`` is the path to a user foreign key, such as ``"owner"`` or
    ``"contact__owner"``.
    """

    class RepUserFilter(admin.SimpleListFilter):
        parameter_name = field.replace("__", "_")

        def lookups(self, request, model_admin):
            reps = Rep.objects.select_related("user").order_by("user__username")
            return [("none", "Nobody"), *((str(r.user_id), str(r)) for r in reps)]

        def queryset(self, request, queryset):
            value = self.value()
            if value == "none":
                return queryset.filter(**{f"{field}__isnull": True})
            if value and value.isdigit():
                return queryset.filter(**{f"{field}_id": int(value)})
            return queryset

    RepUserFilter.title = title
    return RepUserFilter


class ContactVisibilityMixin:
    """Limit a changelist, its objects and its actions to what a user may see.

    Set ``owner_path`` to how the model reaches the owning user; a rep sees
    the rows owned by them, a manager or superuser sees all.
    """

    owner_path = "contact__owner"

    def get_queryset(self, request):
        queryset = super().get_queryset(request)
        if sees_all(request):
            return queryset
        return queryset.filter(**{self.owner_path: request.user})

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        # A rep may only point records at contacts they can see.
        if db_field.related_model is Contact and not sees_all(request):
            kwargs["queryset"] = Contact.objects.visible_to(request.user)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)


class ContactEmailSearchMixin:
    """Search by a whole email address on the folded, indexed column."""

    email_path = "contact__email"

    def get_search_results(self, request, queryset, search_term):
        term = search_term.strip()
        if "@" in term:
            lookup = {self.email_path: normalise_email(term)}
            return queryset.filter(**lookup), False
        return super().get_search_results(request, queryset, search_term)


class ScoredFilter(admin.SimpleListFilter):
    title = "scored"
    parameter_name = "scored"

    def lookups(self, request, model_admin):
        return [("yes", "Scored"), ("no", "Waiting to be scored")]

    def queryset(self, request, queryset):
        if self.value() == "yes":
            return queryset.filter(scored_at__isnull=False)
        if self.value() == "no":
            return queryset.filter(scored_at__isnull=True)
        return queryset


@admin.register(Rep)
class RepAdmin(admin.ModelAdmin):
    list_display = (
        "__str__",
        "region",
        "manager",
        "report_count",
        "capacity",
        "time_zone",
        "is_active",
        "last_assigned_at",
    )
    list_filter = ("is_active",)
    list_select_related = ("user", "manager__user")
    search_fields = ("^user__username", "^user__last_name", "=region")
    ordering = ("user__username",)
    autocomplete_fields = ("manager",)
    raw_id_fields = ("user",)

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .annotate(report_total=count_of(Rep, "manager"))
        )

    @admin.display(description="reports", ordering="report_total")
    def report_count(self, rep):
        return rep.report_total


@admin.register(Account)
class AccountAdmin(admin.ModelAdmin):
    list_display = (
        "name",
        "domain",
        "industry",
        "country",
        "tier",
        "employee_count",
        "owner",
        "contact_count",
        "total_score",
    )
    readonly_fields = ("fit_score", "intent_score", "intent_scored_at", "total_score")
    list_filter = ("tier", owner_filter("owner"))
    list_select_related = ("owner",)
    search_fields = ("^name", "=domain")
    ordering = ("name",)
    raw_id_fields = ("owner", "parent")
    show_full_result_count = False

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .annotate(contact_total=count_of(Contact, "account"))
        )

    @admin.display(description="contacts", ordering="contact_total")
    def contact_count(self, account):
        return account.contact_total


SUPPRESSION_FLAGS = ("do_not_email", "do_not_call", "do_not_contact")


@admin.register(Contact)
class ContactAdmin(ContactVisibilityMixin, ContactEmailSearchMixin, admin.ModelAdmin):
    owner_path = "owner"
    email_path = "email"

    list_display = (
        "__str__",
        "email",
        "account",
        "owner",
        "lifecycle_stage",
        "total_score",
        "fit_score",
        "intent_now",
        "lead_source",
        "created_at",
    )
    list_filter = (
        "lifecycle_stage",
        owner_filter("owner"),
        "do_not_contact",
        "created_at",
    )
    list_select_related = ("account", "owner")
    # A whole email address is matched on the folded column (see the mixin).
    search_fields = ("^last_name", "external_id__exact")
    search_help_text = "A whole email address, an external id or a last name."
    ordering = ("-total_score", "id")
    raw_id_fields = ("account", "owner")
    show_full_result_count = False

    readonly_fields = (
        "fit_score",
        "intent_score",
        "intent_scored_at",
        "total_score",
        "explanation",
        "scores_by_model",
        "mql_at",
        "sql_at",
        "imported_outcome",
        "unsubscribed_at",
        "hard_bounced_at",
        "created_at",
        "updated_at",
        "recent_events",
        "stage_history",
    )
    fieldsets = (
        (
            None,
            {
                "fields": (
                    ("first_name", "last_name"),
                    "email",
                    "phone",
                    "title",
                    "account",
                    "owner",
                    "lifecycle_stage",
                    "external_id",
                )
            },
        ),
        (
            "Profile",
            {
                "fields": (
                    ("city", "country", "time_zone"),
                    ("lead_source", "lead_origin"),
                    ("occupation", "specialization"),
                    "linkedin_url",
                    "attributes",
                )
            },
        ),
        (
            "Consent",
            {
                "fields": (
                    ("do_not_email", "do_not_call", "do_not_contact"),
                    ("unsubscribed_at", "hard_bounced_at"),
                )
            },
        ),
        (
            "Score",
            {
                "fields": (
                    ("fit_score", "intent_score", "total_score"),
                    "intent_scored_at",
                    "explanation",
                    "scores_by_model",
                    ("mql_at", "sql_at"),
                    "imported_outcome",
                    ("created_at", "updated_at"),
                )
            },
        ),
        ("Engagement events", {"fields": ("recent_events",)}),
        ("Stage history", {"fields": ("stage_history",)}),
    )
    # Sections that describe an existing contact; the add page leaves them out.
    timeline_sections = ("Engagement events", "Stage history")

    def get_readonly_fields(self, request, obj=None):
        fields = super().get_readonly_fields(request, obj)
        # The stage of an existing contact moves through change_stage(), which
        # records the move; the form only sets it for a new contact.
        if obj is not None:
            fields = (*fields, "lifecycle_stage")
        if not sees_all(request):
            # Reps work their own leads: only a manager moves a lead to
            # another rep, and a rep may add a suppression but never lift one.
            lifted = [name for name in SUPPRESSION_FLAGS if getattr(obj, name, False)]
            fields = (*fields, "owner", *lifted)
        return fields

    def get_fieldsets(self, request, obj=None):
        fieldsets = super().get_fieldsets(request, obj)
        if obj is None:
            return [fs for fs in fieldsets if fs[0] not in self.timeline_sections]
        return fieldsets

    @admin.display(description="score explanation")
    def explanation(self, contact):
        lines = contact.score_explanation or []
        if not lines:
            return "-"
        if not isinstance(lines, list):
            return str(lines)
        return format_html(
            "<ul>{}</ul>",
            format_html_join("", "<li>{}</li>", ((_reason(line),) for line in lines)),
        )

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(half_life=default_half_life())

    @admin.display(description="intent now", ordering="intent_score")
    def intent_now(self, contact):
        half_life = getattr(contact, "half_life", None) or 30.0
        now = timezone.now()
        value = decayed(contact.intent_score, contact.intent_scored_at, now, half_life)
        return round(value, 1)

    @admin.display(description="scores per model (intent decayed to now)")
    def scores_by_model(self, contact):
        if contact is None or contact.pk is None:
            return "-"
        now = timezone.now()
        scores = (
            contact.scores.filter(model__is_active=True)
            .select_related("model")
            .order_by("-model__is_default", "model__name")
        )
        rows = []
        for score in scores:
            half_life = score.model.intent_half_life_days
            intent = decayed(score.intent_score, score.intent_scored_at, now, half_life)
            lines = score.explanation or []
            if not isinstance(lines, list):
                lines = [lines]
            reasons = ", ".join(_reason(line) for line in lines)
            rows.append(
                (
                    score.model.name,
                    score.fit_score,
                    round(intent, 1),
                    # A learned total does not decay: it reads no intent.
                    score.total_score
                    if score.model.use_learned
                    else score.fit_score + round(intent),
                    reasons or "-",
                )
            )
        return render_rows(("model", "fit", "intent", "total", "why"), rows)

    @admin.display(description="imported outcome (converted in the source system)")
    def imported_outcome(self, contact):
        if contact.known_converted is None:
            return "unknown"
        return "converted" if contact.known_converted else "not converted"

    @admin.display(description="recent events")
    def recent_events(self, contact):
        if contact is None or contact.pk is None:
            return "-"
        events = contact.events.order_by("-occurred_at", "-id")[:TIMELINE_ROWS]
        return render_rows(
            ("when", "what", "source", "scored"),
            [
                (e.occurred_at, e.get_type_display(), e.source, e.scored_at or "no")
                for e in events
            ],
        )

    @admin.display(description="stage changes")
    def stage_history(self, contact):
        if contact is None or contact.pk is None:
            return "-"
        changes = contact.stage_changes.select_related("actor").order_by(
            "-changed_at", "-id"
        )[:TIMELINE_ROWS]
        return render_rows(
            ("when", "from", "to", "by", "reason"),
            [
                (
                    c.changed_at,
                    c.get_from_stage_display() or "-",
                    c.get_to_stage_display(),
                    c.actor or "system",
                    c.reason,
                )
                for c in changes
            ],
        )


def _reason(line) -> str:
    """Render one entry of a score explanation, whatever shape scoring gave it."""
    if not isinstance(line, dict):
        return str(line)
    name = line.get("rule") or line.get("name") or line.get("reason") or ""
    points = line.get("points")
    if not isinstance(points, int | float):
        return name
    hits = line.get("hits")
    if isinstance(hits, int) and hits > 1:
        # An intent line sums a rule's hits; say how many and the latest.
        last = str(line.get("at") or "")[:16].replace("T", " ")
        return f"{name} ×{hits} ({points:+}, last {last})"
    return f"{name} ({points:+})"


@admin.register(EngagementEvent)
class EngagementEventAdmin(
    ContactVisibilityMixin, ContactEmailSearchMixin, admin.ModelAdmin
):
    list_display = (
        "occurred_at",
        "type",
        "contact",
        "source",
        "scored_at",
        "received_at",
    )
    list_filter = ("type", ScoredFilter, "occurred_at")
    list_select_related = ("contact",)
    search_fields = ("external_id__exact",)
    search_help_text = "A contact's whole email address or an event's external id."
    ordering = ("-occurred_at", "-id")
    raw_id_fields = ("contact",)
    readonly_fields = ("received_at", "scored_at")
    show_full_result_count = False


@admin.register(StageChange)
class StageChangeAdmin(
    ContactVisibilityMixin, ContactEmailSearchMixin, admin.ModelAdmin
):
    """Lifecycle history: recorded by change_stage(), read here."""

    list_display = (
        "changed_at",
        "contact",
        "from_stage",
        "to_stage",
        "actor",
        "reason",
    )
    list_filter = ("to_stage", "from_stage", "changed_at")
    list_select_related = ("contact", "actor")
    search_fields = ("contact__external_id__exact",)
    ordering = ("-changed_at", "-id")
    show_full_result_count = False

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(Opportunity)
class OpportunityAdmin(
    ContactVisibilityMixin, ContactEmailSearchMixin, admin.ModelAdmin
):
    list_display = (
        "name",
        "account",
        "contact",
        "owner",
        "product",
        "stage",
        "amount",
        "engaged_at",
        "closed_at",
        "stale_since",
    )
    list_filter = ("stage", "stale_since", owner_filter("owner"))
    list_select_related = ("account", "contact", "owner")
    search_fields = ("^name", "external_id__exact")
    ordering = ("-created_at",)
    date_hierarchy = "closed_at"
    raw_id_fields = ("account", "contact", "owner")
    show_full_result_count = False

    def get_queryset(self, request):
        queryset = super(ContactVisibilityMixin, self).get_queryset(request)
        if sees_all(request):
            return queryset
        # A rep sees the deals they own and those sourced by their contacts.
        user = request.user
        return queryset.filter(Q(owner=user) | Q(contact__owner=user))
