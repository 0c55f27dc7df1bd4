"""API views for events, cadences, enrollments and handoffs.

Views check input and call services; the rules live in nurture.services.
"""

from django.db.models import Q
from django.utils import timezone
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError
from rest_framework.pagination import CursorPagination
from rest_framework.response import Response
from rest_framework.settings import api_settings

from crm.models import Contact, EngagementEvent, can_see_all
from crm.services import StageTransitionError
from nurture.models import Cadence, Enrollment, Handoff
from nurture.services.engagement import ingest_events
from nurture.services.enrollment import (
    enroll_contact,
    pause_enrollment,
    resume_enrollment,
)
from nurture.services.errors import NurtureError
from nurture.services.handoffs import accept_handoff, reject_handoff

from .filters import EnrollmentFilter, EventFilter, HandoffFilter
from .serializers import (
    CadenceSerializer,
    EnrollmentSerializer,
    EventInSerializer,
    EventSerializer,
    HandoffRejectSerializer,
    HandoffSerializer,
)

MAX_EVENTS_PER_REQUEST = 1000


def refusal(exc: NurtureError | StageTransitionError) -> ValidationError:
    """Turn a service's refusal into a 400 that names the field at fault."""
    key = getattr(exc, "field", None) or api_settings.NON_FIELD_ERRORS_KEY
    return ValidationError({key: [getattr(exc, "message", str(exc))]})


class EventPagination(CursorPagination):
    # Events grow without bound; a cursor never counts the whole table.
    ordering = ("-occurred_at", "-id")
    page_size_query_param = "page_size"
    max_page_size = 1000


class EventViewSet(mixins.ListModelMixin, viewsets.GenericViewSet):
    """List engagement events, and take in one event or a list of them.

    A list answers 200 with how many were created, how many were already
    stored, and an entry per refused item naming its index and field.
    """

    serializer_class = EventSerializer
    filterset_class = EventFilter
    pagination_class = EventPagination

    def get_queryset(self):
        events = EngagementEvent.objects.all()
        user = self.request.user
        if can_see_all(user):
            return events
        return events.filter(contact__owner=user)

    def create(self, request, *args, **kwargs):
        payload = request.data
        if isinstance(payload, list):
            return self._create_many(payload)
        if isinstance(payload, dict):
            return self._create_one(payload)
        raise ValidationError(
            {api_settings.NON_FIELD_ERRORS_KEY: ["Send an event or a list of them."]}
        )

    def _create_one(self, item):
        serializer = EventInSerializer(data=item)
        serializer.is_valid(raise_exception=True)
        rows, errors = self._rows([(0, serializer.validated_data)])
        if errors:
            raise ValidationError({errors[0]["field"]: [errors[0]["error"]]})

        result = ingest_events(rows, now=timezone.now())
        if result.rejected:
            raise ValidationError({"external_id": [result.rejected[0][1]]})
        code = status.HTTP_201_CREATED if result.created else status.HTTP_200_OK
        return Response(_summary(result, [0], [], size=1), status=code)

    def _create_many(self, items):
        if len(items) > MAX_EVENTS_PER_REQUEST:
            raise ValidationError(
                {
                    api_settings.NON_FIELD_ERRORS_KEY: [
                        f"Send at most {MAX_EVENTS_PER_REQUEST} events per request."
                    ]
                }
            )

        # Check every item on its own, so one bad item costs only itself.
        valid, errors = [], []
        for index, item in enumerate(items):
            serializer = EventInSerializer(data=item)
            if serializer.is_valid():
                valid.append((index, serializer.validated_data))
            else:
                errors.extend(_item_errors(index, serializer.errors))
        rows, unknown = self._rows(valid)
        row_index = [index for index, _ in valid if index not in _indexes(unknown)]
        result = ingest_events(rows, now=timezone.now())
        rejected = [
            {"index": row_index[position], "field": "external_id", "error": reason}
            for position, reason in result.rejected
        ]
        errors = sorted(errors + unknown + rejected, key=lambda error: error["index"])
        summary = _summary(result, row_index, errors, size=len(items))
        return Response(summary, status=status.HTTP_200_OK)

    def _rows(self, valid):
        """Resolve the contacts of validated items with one query.

        Return the rows ready for ingest_events and an error for each item
        whose contact the user cannot see or that does not exist.
        """
        items = [data for _, data in valid]
        ids = {data["contact"] for data in items if "contact" in data}
        emails = {data["contact_email"] for data in items if "contact_email" in data}
        external_ids = {
            data["contact_external_id"]
            for data in items
            if "contact_external_id" in data
        }
        found = (
            Contact.objects.visible_to(self.request.user)
            .filter(
                Q(pk__in=ids)
                | Q(email__in=emails)
                # The external id index covers only contacts that have one.
                | (Q(external_id__in=external_ids) & ~Q(external_id=""))
            )
            .values_list("pk", "email", "external_id")
        )
        by_key = {}
        for pk, email, external_id in found:
            by_key[("contact", pk)] = pk
            by_key[("contact_email", email)] = pk
            by_key[("contact_external_id", external_id)] = pk

        rows, errors = [], []
        for index, data in valid:
            key = next(k for k in EventInSerializer.CONTACT_KEYS if k in data)
            contact_id = by_key.get((key, data[key]))
            if contact_id is None:
                errors.append(
                    {"index": index, "field": key, "error": "No such contact."}
                )
                continue
            rows.append(
                {
                    "contact": contact_id,
                    "type": data["type"],
                    "occurred_at": data["occurred_at"],
                    "source": data["source"],
                    "properties": data["properties"],
                    "external_id": data["external_id"],
                }
            )
        return rows, errors


def _item_errors(index: int, errors: dict) -> list[dict]:
    return [
        {"index": index, "field": field, "error": " ".join(str(m) for m in messages)}
        for field, messages in errors.items()
    ]


def _indexes(errors: list[dict]) -> set[int]:
    return {error["index"] for error in errors}


def _summary(result, row_index: list[int], errors: list[dict], *, size: int) -> dict:
    """Answer with one id per item sent, in order; null where it failed."""
    ids = [None] * size
    for position, event_id in enumerate(result.ids):
        ids[row_index[position]] = event_id
    return {
        "created": len(result.created),
        "duplicates": result.duplicates,
        "ids": ids,
        "errors": errors,
    }


class CadenceViewSet(viewsets.ReadOnlyModelViewSet):
    queryset = Cadence.objects.all()
    serializer_class = CadenceSerializer


class EnrollmentViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    viewsets.GenericViewSet,
):
    """List enrollments, enroll a contact, and pause or resume one."""

    serializer_class = EnrollmentSerializer
    filterset_class = EnrollmentFilter

    def get_queryset(self):
        return Enrollment.objects.visible_to(self.request.user).select_related(
            "cadence"
        )

    def perform_create(self, serializer):
        data = serializer.validated_data
        try:
            serializer.instance = enroll_contact(
                data["contact"],
                data["cadence"],
                now=timezone.now(),
                actor=self.request.user,
            )
        except NurtureError as exc:
            raise refusal(exc) from None

    @action(detail=True, methods=["post"])
    def pause(self, request, pk=None):
        try:
            enrollment = pause_enrollment(self.get_object(), now=timezone.now())
        except NurtureError as exc:
            raise refusal(exc) from None
        return Response(self.get_serializer(enrollment).data)

    @action(detail=True, methods=["post"])
    def resume(self, request, pk=None):
        try:
            enrollment = resume_enrollment(self.get_object(), now=timezone.now())
        except NurtureError as exc:
            raise refusal(exc) from None
        return Response(self.get_serializer(enrollment).data)


class HandoffViewSet(viewsets.ReadOnlyModelViewSet):
    """A rep's handoffs, to accept or reject inside the SLA."""

    serializer_class = HandoffSerializer
    filterset_class = HandoffFilter

    def get_queryset(self):
        return Handoff.objects.visible_to(self.request.user)

    @action(detail=True, methods=["post"])
    def accept(self, request, pk=None):
        try:
            handoff = accept_handoff(
                self.get_object(), now=timezone.now(), actor=request.user
            )
        except (NurtureError, StageTransitionError) as exc:
            raise refusal(exc) from None
        return Response(HandoffSerializer(handoff).data)

    @action(detail=True, methods=["post"])
    def reject(self, request, pk=None):
        serializer = HandoffRejectSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        try:
            handoff = reject_handoff(
                self.get_object(),
                reason=serializer.validated_data["reason"],
                note=serializer.validated_data["note"],
                now=timezone.now(),
                actor=request.user,
            )
        except (NurtureError, StageTransitionError) as exc:
            raise refusal(exc) from None
        return Response(HandoffSerializer(handoff).data)
