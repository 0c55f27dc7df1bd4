"""Query-string filters for the nurture API lists."""

import django_filters as filters

from crm.api.fields import IdFilter
from crm.models import EngagementEvent
from nurture.models import Enrollment, Handoff


class EventFilter(filters.FilterSet):
    """Events of one contact, of some types, within a time range."""

    type = filters.MultipleChoiceFilter(choices=EngagementEvent.Type.choices)
    occurred_after = filters.IsoDateTimeFilter(
        field_name="occurred_at", lookup_expr="gte"
    )
    occurred_before = filters.IsoDateTimeFilter(
        field_name="occurred_at", lookup_expr="lt"
    )
    contact = IdFilter(field_name="contact_id")

    class Meta:
        model = EngagementEvent
        fields = ["contact", "type", "source"]


class EnrollmentFilter(filters.FilterSet):
    state = filters.MultipleChoiceFilter(choices=Enrollment.State.choices)
    cadence = IdFilter(field_name="cadence_id")
    contact = IdFilter(field_name="contact_id")

    class Meta:
        model = Enrollment
        fields = ["cadence", "contact", "state"]


class HandoffFilter(filters.FilterSet):
    status = filters.MultipleChoiceFilter(choices=Handoff.Status.choices)
    assignee = IdFilter(field_name="assignee_id")
    contact = IdFilter(field_name="contact_id")

    class Meta:
        model = Handoff
        fields = ["status", "assignee", "contact"]
