"""API views for contacts and accounts: plain create and edit, plus stages.

A lifecycle move goes through crm.services.change_stage so it is checked
against the allowed transitions and recorded as a StageChange.
"""

from contextlib import contextmanager

from django.db import IntegrityError, transaction
from django.utils import timezone
from rest_framework import viewsets
from rest_framework.exceptions import ValidationError
from rest_framework.pagination import PageNumberPagination

from crm.models import Account, Contact, can_see_all
from crm.services import StageTransitionError, change_stage

from .filters import AccountFilter, ContactFilter
from .serializers import AccountSerializer, ContactSerializer


class ListPagination(PageNumberPagination):
    page_size_query_param = "page_size"
    max_page_size = 500


class ContactViewSet(viewsets.ModelViewSet):
    """Contacts the user may see: their own, or all for managers."""

    serializer_class = ContactSerializer
    filterset_class = ContactFilter
    pagination_class = ListPagination
    http_method_names = ["get", "post", "put", "patch", "head", "options"]

    def get_queryset(self):
        return Contact.objects.visible_to(self.request.user).select_related(
            "account", "owner"
        )

    def perform_create(self, serializer):
        # A rep's new contact is theirs unless they say otherwise, so it
        # does not vanish from their own list.
        user = self.request.user
        if "owner" not in serializer.validated_data and not can_see_all(user):
            serializer.validated_data["owner"] = user
        with _unique_fields_guard():
            serializer.save()

    def perform_update(self, serializer):
        stage = serializer.validated_data.pop("lifecycle_stage", None)
        with _unique_fields_guard():
            contact = serializer.save()
            if stage is None:
                return
            try:
                change_stage(
                    contact,
                    stage,
                    now=timezone.now(),
                    actor=self.request.user,
                    reason="changed through the API",
                )
            except StageTransitionError as exc:
                raise ValidationError({exc.field: [str(exc)]}) from None


class AccountViewSet(viewsets.ModelViewSet):
    """Accounts: shared by the whole team."""

    queryset = Account.objects.all()
    serializer_class = AccountSerializer
    filterset_class = AccountFilter
    pagination_class = ListPagination
    http_method_names = ["get", "post", "put", "patch", "head", "options"]


@contextmanager
def _unique_fields_guard():
    """Report a lost race on a unique contact field as a 400, not a 500."""
    try:
        with transaction.atomic():
            yield
    except IntegrityError as exc:
        field = "external_id" if "external_id" in str(exc) else "email"
        raise ValidationError(
            {field: [f"A contact with this {field.replace('_', ' ')} exists."]}
        ) from None
