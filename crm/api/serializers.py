"""Shapes of contacts and accounts as the API reads and writes them."""

import re

from rest_framework import serializers

from crm.models import (
    Account,
    Contact,
    LifecycleStage,
    can_see_all,
    normalise_domain,
    normalise_email,
)

from .fields import BoundedPrimaryKeyRelatedField, JSONListField, JSONObjectField

# A host name: dot-separated labels of letters, digits and inner hyphens.
DOMAIN_PATTERN = re.compile(
    r"(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z][a-z0-9-]{0,62}"
)

SCORE_FIELDS = [
    "fit_score",
    "intent_score",
    "intent_scored_at",
    "total_score",
    "score_explanation",
    "mql_at",
    "sql_at",
]


class ContactSerializer(serializers.ModelSerializer):
    """A contact; scores, suppression times and stage dates are read-only.

    ``lifecycle_stage`` is written here only on create; a change to an
    existing contact goes through crm.services.change_stage in the view.
    """

    lifecycle_stage = serializers.ChoiceField(
        choices=LifecycleStage.choices, required=False
    )
    account_name = serializers.CharField(
        source="account.name", read_only=True, default=""
    )
    owner_name = serializers.CharField(
        source="owner.get_username", read_only=True, default=""
    )
    attributes = JSONObjectField(required=False)
    serializer_related_field = BoundedPrimaryKeyRelatedField

    # At least one of these must say who the contact is.
    IDENTITY_FIELDS = ("email", "external_id", "first_name", "last_name", "phone")

    class Meta:
        model = Contact
        fields = [
            "id",
            "external_id",
            "email",
            "first_name",
            "last_name",
            "title",
            "phone",
            "linkedin_url",
            "city",
            "country",
            "time_zone",
            "account",
            "account_name",
            "owner",
            "owner_name",
            "lifecycle_stage",
            "lead_source",
            "lead_origin",
            "occupation",
            "specialization",
            "attributes",
            "do_not_email",
            "do_not_call",
            "do_not_contact",
            "unsubscribed_at",
            "hard_bounced_at",
            *SCORE_FIELDS,
            "created_at",
            "updated_at",
        ]
        read_only_fields = [
            "unsubscribed_at",
            "hard_bounced_at",
            *SCORE_FIELDS,
            "created_at",
            "updated_at",
        ]

    def validate_email(self, value: str) -> str:
        value = normalise_email(value)
        if value and self._taken(email=value):
            raise serializers.ValidationError("A contact with this email exists.")
        return value

    def validate_external_id(self, value: str) -> str:
        value = value.strip()
        if value and self._taken(external_id=value):
            raise serializers.ValidationError("A contact with this external id exists.")
        return value

    def validate_owner(self, value):
        user = self.context["request"].user
        if value is not None and value != user and not can_see_all(user):
            raise serializers.ValidationError(
                "Only a manager can give a contact to someone else."
            )
        return value

    def validate(self, attrs):
        if self.instance is None and not any(
            attrs.get(name) for name in self.IDENTITY_FIELDS
        ):
            raise serializers.ValidationError(
                {
                    "email": [
                        "Say who the contact is: give an email, an external id, "
                        "a name or a phone."
                    ]
                }
            )
        return attrs

    def _taken(self, **lookup) -> bool:
        others = Contact.objects.filter(**lookup)
        if self.instance is not None:
            others = others.exclude(pk=self.instance.pk)
        return others.exists()


class AccountSerializer(serializers.ModelSerializer):
    """A company; its domain is stored as a bare host name."""

    technographics = JSONListField(required=False)
    year_established = serializers.IntegerField(
        required=False, allow_null=True, min_value=1600, max_value=2100
    )
    serializer_related_field = BoundedPrimaryKeyRelatedField

    class Meta:
        model = Account
        fields = [
            "id",
            "name",
            "domain",
            "industry",
            "employee_count",
            "annual_revenue",
            "country",
            "year_established",
            "parent",
            "technographics",
            "tier",
            "owner",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["created_at", "updated_at"]

    def validate_name(self, value: str) -> str:
        value = value.strip()
        if self._taken(name__iexact=value):
            raise serializers.ValidationError("An account with this name exists.")
        return value

    def validate_domain(self, value: str) -> str:
        value = normalise_domain(value)
        if value and not DOMAIN_PATTERN.fullmatch(value):
            raise serializers.ValidationError(
                "Enter a domain name such as example.com."
            )
        if value and self._taken(domain=value):
            raise serializers.ValidationError("An account with this domain exists.")
        return value

    def _taken(self, **lookup) -> bool:
        others = Account.objects.filter(**lookup)
        if self.instance is not None:
            others = others.exclude(pk=self.instance.pk)
        return others.exists()
