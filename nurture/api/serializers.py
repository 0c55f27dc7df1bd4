"""Shapes of engagement events, cadences, enrollments and handoffs."""

import datetime as dt

from django.utils import timezone
from rest_framework import serializers

from crm.api.fields import (
    MAX_ID,
    BoundedPrimaryKeyRelatedField,
    JSONObjectField,
)
from crm.models import Contact, EngagementEvent
from nurture.models import Cadence, Enrollment, Handoff
from nurture.services.handoffs import RejectReason


class AwareDateTimeField(serializers.DateTimeField):
    """An ISO 8601 moment that must say which time zone it is in."""

    default_error_messages = {
        "naive": "Give a time zone offset (e.g. 2025-01-31T09:00:00Z).",
    }

    def enforce_timezone(self, value):
        # DRF would quietly read a naive time in the server's zone; an event
        # from another system is then off by hours, so refuse it instead.
        if timezone.is_naive(value):
            self.fail("naive")
        return super().enforce_timezone(value)


class EventInSerializer(serializers.Serializer):
    """One engagement event as an integration sends it.

    The contact is named by exactly one of ``contact`` (id),
    ``contact_email`` or ``contact_external_id``; the view resolves them for
    the whole request at once.
    """

    contact = serializers.IntegerField(required=False, min_value=1, max_value=MAX_ID)
    contact_email = serializers.EmailField(required=False)
    contact_external_id = serializers.CharField(required=False, max_length=100)
    type = serializers.ChoiceField(choices=EngagementEvent.Type.choices)
    occurred_at = AwareDateTimeField()
    source = serializers.CharField(
        required=False, allow_blank=True, max_length=64, default=""
    )
    properties = JSONObjectField(required=False, default=dict)
    external_id = serializers.CharField(
        required=False, allow_blank=True, max_length=200, default=""
    )

    CONTACT_KEYS = ("contact", "contact_email", "contact_external_id")

    # Clocks drift, but an event a day ahead of ours is a sender's bug.
    FUTURE_TOLERANCE = dt.timedelta(days=1)

    def validate_occurred_at(self, value):
        if value > timezone.now() + self.FUTURE_TOLERANCE:
            raise serializers.ValidationError("The event cannot be in the future.")
        return value

    def validate(self, attrs):
        given = [key for key in self.CONTACT_KEYS if attrs.get(key) not in (None, "")]
        if len(given) != 1:
            raise serializers.ValidationError(
                {
                    "contact": [
                        "Name the contact by exactly one of contact, "
                        "contact_email or contact_external_id."
                    ]
                }
            )
        if "contact_email" in attrs:
            attrs["contact_email"] = attrs["contact_email"].strip().lower()
        return attrs


class EventSerializer(serializers.ModelSerializer):
    """An engagement event as stored."""

    class Meta:
        model = EngagementEvent
        fields = [
            "id",
            "contact",
            "type",
            "source",
            "occurred_at",
            "received_at",
            "properties",
            "external_id",
            "scored_at",
        ]
        read_only_fields = fields


class CadenceSerializer(serializers.ModelSerializer):
    class Meta:
        model = Cadence
        fields = [
            "id",
            "name",
            "description",
            "is_active",
            "send_window_start",
            "send_window_end",
            "send_weekdays",
            "exit_on_reply",
            "exit_on_meeting",
            "exit_on_handoff",
            "reenrollment",
            "reenroll_after_days",
            "created_at",
        ]
        read_only_fields = fields


class VisibleContactField(BoundedPrimaryKeyRelatedField):
    """A contact id the requesting user is allowed to see."""

    def get_queryset(self):
        return Contact.objects.visible_to(self.context["request"].user)


class EnrollmentSerializer(serializers.ModelSerializer):
    """An enrollment; only contact and cadence are given, to enroll."""

    contact = VisibleContactField()
    cadence = BoundedPrimaryKeyRelatedField(queryset=Cadence.objects.all())
    cadence_name = serializers.CharField(source="cadence.name", read_only=True)

    class Meta:
        model = Enrollment
        fields = [
            "id",
            "contact",
            "cadence",
            "cadence_name",
            "state",
            "next_position",
            "next_due_at",
            "enrolled_at",
            "enrolled_by",
            "paused_at",
            "ended_at",
            "exit_reason",
        ]
        read_only_fields = [
            "state",
            "next_position",
            "next_due_at",
            "enrolled_at",
            "enrolled_by",
            "paused_at",
            "ended_at",
            "exit_reason",
        ]
        # One open enrollment per contact and cadence is the service's rule
        # to explain; the database constraint is only its backstop.
        validators = []


class HandoffSerializer(serializers.ModelSerializer):
    class Meta:
        model = Handoff
        fields = [
            "id",
            "contact",
            "assignee",
            "status",
            "routing_reason",
            "context",
            "created_at",
            "sla_due_at",
            "accepted_at",
            "rejected_at",
            "rejection_reason",
            "breached_at",
            "escalated_to",
            "sla_policy",
            "escalation_level",
            "first_touch_at",
        ]
        read_only_fields = fields


class HandoffRejectSerializer(serializers.Serializer):
    reason = serializers.ChoiceField(choices=RejectReason.CHOICES)
    note = serializers.CharField(required=False, allow_blank=True, default="")
