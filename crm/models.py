"""People, companies and what they did: the records every other part reads."""

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.db.models.functions import Lower

from .validators import validate_time_zone


class Rep(models.Model):
    """A sales rep or manager: the profile behind a login that owns leads."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="rep"
    )
    manager = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="reports",
    )
    region = models.CharField(max_length=64, blank=True, db_index=True)
    time_zone = models.CharField(
        max_length=64, default="UTC", validators=[validate_time_zone]
    )
    workday_start = models.TimeField(default="09:00")
    workday_end = models.TimeField(default="17:00")
    capacity = models.PositiveIntegerField(
        default=50, help_text="Open handoffs this rep can carry at once."
    )
    is_active = models.BooleanField(default=True)
    last_assigned_at = models.DateTimeField(null=True, blank=True)
    out_of_office_from = models.DateField(null=True, blank=True)
    out_of_office_until = models.DateField(null=True, blank=True)
    holiday_country = models.CharField(
        max_length=2,
        blank=True,
        help_text="ISO country code whose public holidays the rep takes off.",
    )

    class Meta:
        ordering = ["user__username"]

    def __str__(self) -> str:
        return self.user.get_full_name() or self.user.get_username()

    @property
    def is_manager(self) -> bool:
        return self.reports.exists()


class Account(models.Model):
    """A company that contacts work for."""

    class Tier(models.TextChoices):
        NONE = "", "Not targeted"
        TIER_1 = "tier1", "Tier 1 (named account)"
        TIER_2 = "tier2", "Tier 2"
        TIER_3 = "tier3", "Tier 3"

    name = models.CharField(max_length=200)
    domain = models.CharField(max_length=253, blank=True, default="")
    industry = models.CharField(max_length=100, blank=True, db_index=True)
    employee_count = models.PositiveIntegerField(null=True, blank=True)
    annual_revenue = models.DecimalField(
        max_digits=16,
        decimal_places=2,
        null=True,
        blank=True,
        help_text="In millions of the reporting currency.",
    )
    country = models.CharField(max_length=100, blank=True, db_index=True)
    year_established = models.PositiveSmallIntegerField(null=True, blank=True)
    parent = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="subsidiaries",
    )
    technographics = models.JSONField(default=list, blank=True)
    tier = models.CharField(max_length=8, choices=Tier.choices, blank=True, default="")
    time_zone = models.CharField(
        max_length=64, blank=True, validators=[validate_time_zone]
    )
    fit_score = models.IntegerField(default=0)
    intent_score = models.FloatField(default=0)
    intent_scored_at = models.DateTimeField(null=True, blank=True)
    total_score = models.IntegerField(default=0, db_index=True)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="owned_accounts",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(Lower("name"), name="crm_account_name_ci_unique"),
            models.UniqueConstraint(
                "domain",
                condition=~Q(domain=""),
                name="crm_account_domain_unique",
            ),
        ]

    def __str__(self) -> str:
        return self.name

    def save(self, *args, **kwargs):
        self.domain = normalise_domain(self.domain)
        super().save(*args, **kwargs)


class LifecycleStage(models.TextChoices):
    SUBSCRIBER = "subscriber", "Subscriber"
    LEAD = "lead", "Lead"
    MQL = "mql", "Marketing qualified"
    SQL = "sql", "Sales qualified"
    OPPORTUNITY = "opportunity", "Opportunity"
    CUSTOMER = "customer", "Customer"
    RECYCLED = "recycled", "Recycled"
    DISQUALIFIED = "disqualified", "Disqualified"


class ContactQuerySet(models.QuerySet):
    def emailable(self) -> "ContactQuerySet":
        """Contacts that may receive an automated email now."""
        return self.exclude(email="").filter(
            do_not_email=False,
            do_not_contact=False,
            unsubscribed_at__isnull=True,
            hard_bounced_at__isnull=True,
        )

    def visible_to(self, user) -> "ContactQuerySet":
        """Contacts a user may see: everything for managers, own leads for reps."""
        if can_see_all(user):
            return self
        return self.filter(owner=user)


class Contact(models.Model):
    """A person we nurture towards a sales conversation."""

    Stage = LifecycleStage

    class ConsentBasis(models.TextChoices):
        UNKNOWN = "", "Not recorded"
        OPT_IN = "opt_in", "Explicit opt-in"
        LEGITIMATE_INTEREST = "legitimate_interest", "Legitimate interest"
        CUSTOMER = "customer", "Existing customer relationship"

    external_id = models.CharField(
        max_length=100,
        blank=True,
        default="",
        help_text="The id of this person in the system it was imported from.",
    )
    email = models.EmailField(max_length=254, blank=True, default="")
    first_name = models.CharField(max_length=100, blank=True)
    last_name = models.CharField(max_length=100, blank=True)
    title = models.CharField(max_length=200, blank=True)
    phone = models.CharField(max_length=32, blank=True)
    linkedin_url = models.URLField(blank=True)
    city = models.CharField(max_length=100, blank=True)
    country = models.CharField(max_length=100, blank=True, db_index=True)
    time_zone = models.CharField(
        max_length=64, blank=True, validators=[validate_time_zone]
    )
    account = models.ForeignKey(
        Account,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="contacts",
    )
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="owned_contacts",
    )
    lifecycle_stage = models.CharField(
        max_length=16, choices=LifecycleStage.choices, default=LifecycleStage.LEAD
    )
    lead_source = models.CharField(max_length=100, blank=True, db_index=True)
    lead_origin = models.CharField(max_length=100, blank=True)
    occupation = models.CharField(max_length=100, blank=True)
    specialization = models.CharField(max_length=100, blank=True)
    attributes = models.JSONField(default=dict, blank=True)

    do_not_email = models.BooleanField(default=False)
    do_not_call = models.BooleanField(default=False)
    do_not_contact = models.BooleanField(default=False)
    unsubscribed_at = models.DateTimeField(null=True, blank=True)
    hard_bounced_at = models.DateTimeField(null=True, blank=True)
    complained_at = models.DateTimeField(null=True, blank=True)
    consent_basis = models.CharField(
        max_length=24, choices=ConsentBasis.choices, blank=True, default=""
    )
    consent_recorded_at = models.DateTimeField(null=True, blank=True)

    fit_score = models.IntegerField(default=0)
    intent_score = models.FloatField(
        default=0, help_text="Intent as of intent_scored_at; decays after that."
    )
    intent_scored_at = models.DateTimeField(null=True, blank=True)
    total_score = models.IntegerField(default=0, db_index=True)
    score_explanation = models.JSONField(default=list, blank=True)
    mql_at = models.DateTimeField(null=True, blank=True)
    sql_at = models.DateTimeField(null=True, blank=True)

    # The outcome the source system recorded. Held out: nothing that decides
    # what happens to a contact may read it; only reports compare against it.
    known_converted = models.BooleanField(null=True, blank=True)

    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = ContactQuerySet.as_manager()

    class Meta:
        ordering = ["-total_score", "id"]
        constraints = [
            models.UniqueConstraint(
                Lower("email"),
                condition=~Q(email=""),
                name="crm_contact_email_ci_unique",
            ),
            models.UniqueConstraint(
                "external_id",
                condition=~Q(external_id=""),
                name="crm_contact_external_id_unique",
            ),
        ]
        indexes = [
            # Stored addresses are folded, so lookups compare the plain column.
            models.Index(fields=["email"], name="crm_contact_email_idx"),
            models.Index(fields=["owner", "lifecycle_stage"]),
            models.Index(fields=["lifecycle_stage", "-total_score"]),
        ]

    def __str__(self) -> str:
        name = f"{self.first_name} {self.last_name}".strip()
        if name or self.email:
            return name or self.email
        # Imported leads often carry only the source system's number.
        lead_number = (self.attributes or {}).get("lead_number")
        if lead_number:
            return f"Lead #{lead_number}"
        return self.external_id or f"Contact {self.pk}"

    def save(self, *args, **kwargs):
        self.email = normalise_email(self.email)
        super().save(*args, **kwargs)

    @property
    def name(self) -> str:
        return f"{self.first_name} {self.last_name}".strip()


class EngagementEventQuerySet(models.QuerySet):
    def unscored(self) -> "EngagementEventQuerySet":
        """Events that have not yet been counted in their contact's score."""
        return self.filter(scored_at__isnull=True)


class EngagementEvent(models.Model):
    """Something a contact did, as reported by a site, an ESP or a rep."""

    class Type(models.TextChoices):
        PAGE_VIEW = "page_view", "Page view"
        PRICING_VISIT = "pricing_visit", "Pricing page visit"
        WEB_ACTIVITY = "web_activity", "Website activity summary"
        CONTENT_DOWNLOAD = "content_download", "Content download"
        FORM_SUBMIT = "form_submit", "Form submitted"
        DEMO_REQUEST = "demo_request", "Demo requested"
        CHAT = "chat", "Chat conversation"
        EMAIL_SENT = "email_sent", "Email sent"
        EMAIL_OPEN = "email_open", "Email opened"
        EMAIL_CLICK = "email_click", "Email link clicked"
        EMAIL_REPLY = "email_reply", "Email replied"
        EMAIL_BOUNCE = "email_bounce", "Email bounced"
        SMS_SENT = "sms_sent", "SMS sent"
        CALL_CONNECTED = "call_connected", "Phone conversation"
        UNREACHABLE = "unreachable", "Unreachable"
        UNSUBSCRIBE = "unsubscribe", "Unsubscribed"
        MEETING_BOOKED = "meeting_booked", "Meeting booked"
        OTHER = "other", "Other"

    # The (contact, -occurred_at) index below serves every lookup by contact;
    # a second index on the contact alone would only slow each insert.
    contact = models.ForeignKey(
        Contact, on_delete=models.CASCADE, related_name="events", db_index=False
    )
    type = models.CharField(max_length=32, choices=Type.choices, db_index=True)
    source = models.CharField(max_length=64, blank=True)
    occurred_at = models.DateTimeField(db_index=True)
    received_at = models.DateTimeField(auto_now_add=True)
    properties = models.JSONField(default=dict, blank=True)
    external_id = models.CharField(
        max_length=200,
        blank=True,
        default="",
        help_text="The sender's id for this event, unique per source; a repeat "
        "is ignored.",
    )
    scored_at = models.DateTimeField(null=True, blank=True)

    objects = EngagementEventQuerySet.as_manager()

    class Meta:
        ordering = ["-occurred_at", "-id"]
        constraints = [
            # Each sender numbers its own events: the same id from two
            # sources names two different events.
            models.UniqueConstraint(
                "source",
                "external_id",
                condition=~Q(external_id=""),
                name="crm_event_source_external_id_unique",
            ),
        ]
        indexes = [
            models.Index(fields=["contact", "-occurred_at"]),
            models.Index(
                fields=["id"],
                condition=Q(scored_at__isnull=True),
                name="crm_event_unscored_idx",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_type_display()} by {self.contact_id}"


class StageChange(models.Model):
    """One move of a contact through the lifecycle."""

    contact = models.ForeignKey(
        Contact, on_delete=models.CASCADE, related_name="stage_changes"
    )
    from_stage = models.CharField(
        max_length=16, choices=LifecycleStage.choices, blank=True
    )
    to_stage = models.CharField(max_length=16, choices=LifecycleStage.choices)
    changed_at = models.DateTimeField(db_index=True)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    reason = models.CharField(max_length=255, blank=True)

    class Meta:
        ordering = ["-changed_at", "-id"]

    def __str__(self) -> str:
        return f"{self.from_stage or '-'} -> {self.to_stage}"


class Opportunity(models.Model):
    """A deal in the sales pipeline, tied back to the contact that sourced it."""

    class Stage(models.TextChoices):
        PROSPECTING = "prospecting", "Prospecting"
        ENGAGING = "engaging", "Engaging"
        WON = "won", "Won"
        LOST = "lost", "Lost"

    name = models.CharField(max_length=200)
    external_id = models.CharField(max_length=100, blank=True, default="")
    account = models.ForeignKey(
        Account,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="opportunities",
    )
    contact = models.ForeignKey(
        Contact,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="opportunities",
    )
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="opportunities",
    )
    product = models.CharField(max_length=100, blank=True)
    stage = models.CharField(
        max_length=16, choices=Stage.choices, default=Stage.PROSPECTING
    )
    amount = models.DecimalField(max_digits=14, decimal_places=2, null=True, blank=True)
    source = models.CharField(
        max_length=200, blank=True, help_text="The programme that sourced it."
    )
    engaged_at = models.DateTimeField(null=True, blank=True)
    closed_at = models.DateTimeField(null=True, blank=True)
    last_activity_at = models.DateTimeField(null=True, blank=True)
    stale_since = models.DateTimeField(
        null=True, blank=True, help_text="Flagged stale: no activity for too long."
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name_plural = "opportunities"
        constraints = [
            models.UniqueConstraint(
                "external_id",
                condition=~Q(external_id=""),
                name="crm_opportunity_external_id_unique",
            ),
        ]

    def __str__(self) -> str:
        return self.name


def normalise_email(value: str) -> str:
    """Fold an address to the one form we store and compare."""
    return (value or "").strip().lower()


def normalise_domain(value: str) -> str:
    """Reduce a website or domain to its bare lower-case host name."""
    value = (value or "").strip().lower()
    for prefix in ("https://", "http://"):
        if value.startswith(prefix):
            value = value[len(prefix) :]
    value = value.split("/", 1)[0]
    if value.startswith("www."):
        value = value[4:]
    return value


def can_see_all(user) -> bool:
    """Say whether a user sees every record, not only their own.

    The answer is kept on the user object, which lives for one request, so
    a view, its serializer and its filters ask the database once.
    """
    if user.is_superuser:
        return True
    cached = getattr(user, "_nurture_can_see_all", None)
    if cached is None:
        from django.contrib.auth import get_user_model

        from .roles import INTEGRATIONS

        # Managers see their reps' records; a system pushing data in over the
        # API (the Integrations group) names contacts whoever owns them.
        cached = (
            get_user_model()
            .objects.filter(pk=user.pk)
            .filter(Q(rep__reports__isnull=False) | Q(groups__name=INTEGRATIONS))
            .exists()
        )
        user._nurture_can_see_all = cached
    return cached
