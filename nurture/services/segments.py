"""Segments: saved contact filters written in the contact API's language.

A segment's ``filters`` is the query string the contact list accepts, kept
as JSON: ``{"country": "India", "total_score_min": 40, "lifecycle_stage":
["mql", "sql"]}``. Running it through the API's own FilterSet keeps one
filter language for the API, segments, routing and SLA policies.
"""

from django.db.models import QuerySet
from django.http import QueryDict

from crm.api.filters import ContactFilter
from crm.models import Contact
from nurture.models import Segment

from .errors import NurtureError


class SegmentError(NurtureError):
    """A segment's filters use a key or value the filter language refuses."""


def segment_queryset(segment: Segment) -> QuerySet[Contact]:
    """Return the contacts a segment selects; raise SegmentError if invalid."""
    return filter_contacts(segment.filters, Contact.objects.all())


def contact_in_segment(contact: Contact, segment: Segment) -> bool:
    """Say whether one contact is in a segment: one query."""
    return segment_queryset(segment).filter(pk=contact.pk).exists()


def segment_contact_ids(segment: Segment, contact_ids) -> set[int]:
    """Return which of the given contacts are in a segment: one query."""
    rows = segment_queryset(segment).filter(pk__in=list(contact_ids))
    return set(rows.order_by().values_list("pk", flat=True))


def validate_segment_filters(filters) -> None:
    """Raise SegmentError naming the first key or value that cannot be used."""
    filter_contacts(filters, Contact.objects.none())


def filter_contacts(filters, queryset: QuerySet[Contact]) -> QuerySet[Contact]:
    """Apply filters in the contact API's language to a contact queryset."""
    if not isinstance(filters, dict):
        raise SegmentError(
            "filters must be an object of filter names to values", field="filters"
        )
    allowed = allowed_filter_keys()
    unknown = sorted(set(filters) - allowed)
    if unknown:
        raise SegmentError(
            f"unknown filter {unknown[0]!r}; use one of {', '.join(sorted(allowed))}",
            field=unknown[0],
        )

    filterset = ContactFilter(data=_as_query_dict(filters), queryset=queryset)
    if not filterset.is_valid():
        # Form errors are keyed by filter name; a range reports its base name.
        key, messages = next(iter(filterset.errors.items()))
        raise SegmentError(f"filter {key!r}: {' '.join(messages)}", field=key)
    return filterset.qs


def allowed_filter_keys() -> set[str]:
    """Return every query key the contact filter language understands."""
    keys = set()
    for name, declared in ContactFilter.base_filters.items():
        suffixes = getattr(declared.field.widget, "suffixes", None)
        if suffixes:
            keys.update(f"{name}_{suffix}" for suffix in suffixes)
        else:
            keys.add(name)
    return keys


def _as_query_dict(filters: dict) -> QueryDict:
    data = QueryDict(mutable=True)
    for key, value in filters.items():
        values = value if isinstance(value, list | tuple) else [value]
        data.setlist(key, ["" if v is None else str(v) for v in values])
    return data
