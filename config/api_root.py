"""The API's front page: where each collection lives."""

from rest_framework.decorators import api_view, permission_classes
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response
from rest_framework.reverse import reverse

COLLECTIONS = [
    ("contacts", "contact-list"),
    ("accounts", "account-list"),
    ("events", "event-list"),
    ("cadences", "cadence-list"),
    ("enrollments", "enrollment-list"),
    ("handoffs", "handoff-list"),
]


@api_view(["GET"])
@permission_classes([IsAuthenticated])
def api_root(request, format=None):
    """List the API's collections with their addresses."""
    return Response(
        {
            name: reverse(route, request=request, format=format)
            for name, route in COLLECTIONS
        }
    )
