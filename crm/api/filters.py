"""Query-string filters for the contact and account lists."""

import django_filters as filters

from crm.models import Account, Contact, LifecycleStage

from .fields import IdFilter


class ContactFilter(filters.FilterSet):
    """Contacts by stage, owner, source, country, scores and recency.

    Score ranges read as ``total_score_min`` / ``total_score_max`` (and the
    same for fit and intent); ``updated_after`` takes an ISO 8601 time.
    """

    lifecycle_stage = filters.MultipleChoiceFilter(choices=LifecycleStage.choices)
    owner = IdFilter(field_name="owner_id")
    account = IdFilter(field_name="account_id")
    total_score = filters.RangeFilter()
    fit_score = filters.RangeFilter()
    intent_score = filters.RangeFilter()
    updated_after = filters.IsoDateTimeFilter(
        field_name="updated_at", lookup_expr="gte"
    )
    email = filters.CharFilter(method="filter_email")

    class Meta:
        model = Contact
        fields = ["lifecycle_stage", "owner", "lead_source", "country", "external_id"]

    def filter_email(self, queryset, name, value):
        # Stored addresses are folded, so an exact match on the folded
        # value uses the index.
        return queryset.filter(email=value.strip().lower())


class AccountFilter(filters.FilterSet):
    tier = filters.MultipleChoiceFilter(choices=Account.Tier.choices)
    owner = IdFilter(field_name="owner_id")

    class Meta:
        model = Account
        fields = ["industry", "country", "tier", "owner", "domain"]
