"""Shapes of contacts and accounts as the API reads and writes them."""

import re

from django.apps import apps
from django.utils import timezone
from rest_framework import serializers

from crm.models import (
    Account,
    Contact,
    LifecycleStage,
    can_see_all,
    normalise_domain,
    normalise_email,
)
from crm.services import decayed

from .fields import BoundedPrimaryKeyRelatedField, JSONListField, JSONObjectField

# A rep may set these but only a manager may clear them again.
SUPPRESSION_FLAGS = ("do_not_email", "do_not_call", "do_not_contact")

# The stages a contact may be created in over the API.
CREATE_STAGES = (LifecycleStage.SUBSCRIBER, LifecycleStage.LEAD)

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
ACCOUNT_SCORE_FIELDS = ["fit_score", "intent_score", "intent_scored_at", "total_score"]


class CurrentScoreMixin:
    """Show stored intent decayed to the request's moment.

    ``now`` is taken once per request and the default scoring model's
    half-life read once, and only when a row has intent left to decay.
    """

    def current(self, value: float, since) -> float:
        if not value or since is None:
            return value
        self._load_default_model()
        now, half_life = self.context["score_now"], self.context["score_half_life"]
        return round(decayed(value, since, now, half_life), 2)

    def learned(self) -> bool:
        """Say whether the default model's total comes from learned weights.

        A learned total reads the profile and events, not time: it does not
        decay, so the stored total is the current one.
        """
        self._load_default_model()
        return self.context["score_learned"]

    def _load_default_model(self) -> None:
        context = self.context
        if "score_half_life" in context:
            return
        context.setdefault("score_now", timezone.now())
        model = (
            apps.get_model("nurture", "ScoringModel")
            .objects.filter(is_default=True)
            .first()
        )
        context["score_half_life"] = model.intent_half_life_days if model else 30
        context["score_learned"] = bool(model and model.use_learned)


class ContactSerializer(CurrentScoreMixin, serializers.ModelSerializer):
    """A contact; scores, suppression times and stage dates are read-only.

    ``intent_now`` and ``total_now`` are the default model's scores decayed
    to now; the detail adds ``scores``, one entry per active scoring model.

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
    intent_now = serializers.SerializerMethodField()
    total_now = serializers.SerializerMethodField()
    scores = serializers.SerializerMethodField()
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
            "intent_now",
            "total_now",
            "scores",
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

    def validate_lifecycle_stage(self, value: str) -> str:
        # A new contact starts at the top of the funnel; any later stage is
        # reached through change_stage, which records who moved it and why.
        if self.instance is None and value not in CREATE_STAGES:
            raise serializers.ValidationError(
                "A new contact starts as subscriber or lead; move it on "
                "with a stage change."
            )
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
        lifted = self._lifted_suppressions(attrs)
        if lifted:
            raise serializers.ValidationError(
                {name: ["Only a manager can lift a suppression."] for name in lifted}
            )
        return attrs

    def _lifted_suppressions(self, attrs) -> list[str]:
        """Suppression flags this update would clear; reps may not."""
        if self.instance is None or can_see_all(self.context["request"].user):
            return []
        return [
            name
            for name in SUPPRESSION_FLAGS
            if getattr(self.instance, name) and attrs.get(name) is False
        ]

    def get_fields(self):
        fields = super().get_fields()
        # Per-model scores cost a query per contact: the detail only.
        view = self.context.get("view")
        if getattr(view, "action", None) != "retrieve":
            fields.pop("scores", None)
        return fields

    def get_intent_now(self, contact: Contact) -> float:
        return self.current(contact.intent_score, contact.intent_scored_at)

    def get_total_now(self, contact: Contact) -> int:
        if self.learned():
            return contact.total_score
        intent = self.current(contact.intent_score, contact.intent_scored_at)
        return contact.fit_score + round(intent)

    def get_scores(self, contact: Contact) -> list[dict]:
        now = self.context.setdefault("score_now", timezone.now())
        scores = (
            contact.scores.filter(model__is_active=True)
            .select_related("model")
            .order_by("-model__is_default", "model__name")
        )
        result = []
        for score in scores:
            intent = decayed(
                score.intent_score,
                score.intent_scored_at,
                now,
                score.model.intent_half_life_days,
            )
            result.append(
                {
                    "model": score.model.name,
                    "fit": score.fit_score,
                    "intent": round(intent, 2),
                    # A learned total does not decay (see learned()).
                    "total": score.total_score
                    if score.model.use_learned
                    else score.fit_score + round(intent),
                    "explanation": score.explanation,
                }
            )
        return result

    def _taken(self, **lookup) -> bool:
        others = Contact.objects.filter(**lookup)
        if self.instance is not None:
            others = others.exclude(pk=self.instance.pk)
        return others.exists()


class AccountSerializer(CurrentScoreMixin, serializers.ModelSerializer):
    """A company; its domain is stored as a bare host name.

    Scores are read-only: fit from account rules, intent from its contacts'
    top intent (``intent_now`` decayed to now).
    """

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
            *ACCOUNT_SCORE_FIELDS,
            "intent_now",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["created_at", "updated_at", *ACCOUNT_SCORE_FIELDS]

    intent_now = serializers.SerializerMethodField()

    def get_intent_now(self, account: Account) -> float:
        return self.current(account.intent_score, account.intent_scored_at)

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
