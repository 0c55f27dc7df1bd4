"""Read retargeting audiences: a paged list and a CSV an ad tool can take."""

import csv

from django.http import StreamingHttpResponse
from rest_framework import generics, serializers
from rest_framework.pagination import PageNumberPagination

from crm.models import can_see_all
from nurture.models import AudienceMember
from nurture.services.audiences import audience_members

CSV_COLUMNS = ["contact_id", "email", "first_name", "last_name", "added_at"]


class AudienceMemberSerializer(serializers.ModelSerializer):
    contact_id = serializers.IntegerField(read_only=True)
    email = serializers.EmailField(source="contact.email", read_only=True)
    first_name = serializers.CharField(source="contact.first_name", read_only=True)
    last_name = serializers.CharField(source="contact.last_name", read_only=True)

    class Meta:
        model = AudienceMember
        fields = ["contact_id", "email", "first_name", "last_name", "added_at"]


class AudiencePagination(PageNumberPagination):
    page_size_query_param = "page_size"
    max_page_size = 1000


class AudienceMembersMixin:
    def get_queryset(self):
        members = audience_members(self.kwargs["audience"])
        user = self.request.user
        if can_see_all(user):
            return members
        return members.filter(contact__owner=user)


class AudienceMemberList(AudienceMembersMixin, generics.ListAPIView):
    """List the current members of one audience, oldest first."""

    serializer_class = AudienceMemberSerializer
    pagination_class = AudiencePagination


class _Echo:
    def write(self, value):
        return value


class AudienceMemberCsv(AudienceMembersMixin, generics.GenericAPIView):
    """Stream every current member of one audience as CSV."""

    def get(self, request, *args, **kwargs):
        writer = csv.writer(_Echo())
        rows = self.get_queryset().values_list(
            "contact_id",
            "contact__email",
            "contact__first_name",
            "contact__last_name",
            "added_at",
        )

        def lines():
            yield writer.writerow(CSV_COLUMNS)
            for contact_id, email, first, last, added_at in rows.iterator(2000):
                yield writer.writerow(
                    [contact_id, email, first, last, added_at.isoformat()]
                )

        name = self.kwargs["audience"]
        response = StreamingHttpResponse(lines(), content_type="text/csv")
        response["Content-Disposition"] = f'attachment; filename="{name}.csv"'
        return response
