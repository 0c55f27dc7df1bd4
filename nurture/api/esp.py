"""Webhook endpoint for email providers: POST /api/webhooks/esp/<provider>/.

Providers hold no user token, so DRF authentication is off here and each
post proves itself instead: Mailgun by its signature, Postmark and SendGrid
by a shared secret in the URL (``?token=``), an X-Nurture-Webhook-Token
header or HTTP basic auth (the password). Nothing is accepted while the
provider's key is unset.
"""

import base64
import binascii

from django.utils import timezone
from rest_framework import status
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response
from rest_framework.views import APIView

from nurture.services.errors import NurtureError
from nurture.services.esp import (
    PARSERS,
    WebhookAuthError,
    record_provider_events,
    verify_mailgun,
    verify_token,
)

from .views import refusal

TOKEN_HEADER = "HTTP_X_NURTURE_WEBHOOK_TOKEN"


class ProviderWebhook(APIView):
    """Take in one provider post and answer what was stored and refused.

    200 with counts and an entry per refused item (index, field, error)
    when anything was readable; 400 naming the field when nothing was;
    401 without credentials and 403 with wrong ones or none configured.
    """

    authentication_classes: list = []
    permission_classes: list = []
    throttle_classes: list = []

    def post(self, request, provider: str):
        if provider not in PARSERS:
            return Response(
                {"detail": f"Unknown email provider {provider!r}."},
                status=status.HTTP_404_NOT_FOUND,
            )
        try:
            self.authenticate_provider(request, provider)
        except WebhookAuthError as error:
            return Response({"detail": str(error)}, status=error.status)

        try:
            result = record_provider_events(provider, request.data, now=timezone.now())
        except NurtureError as error:
            raise refusal(error) from error
        stored = result.created + result.duplicates + result.delivered
        if result.errors and not (stored or result.ignored):
            first = result.errors[0]
            raise ValidationError({first["field"]: [first["error"]]})
        return Response(
            {
                "created": result.created,
                "duplicates": result.duplicates,
                "delivered": result.delivered,
                "ignored": result.ignored,
                "errors": result.errors,
            }
        )

    def authenticate_provider(self, request, provider: str) -> None:
        """Raise WebhookAuthError unless the post proves it is the provider's."""
        if provider == "mailgun":
            verify_mailgun(request.data)
        else:
            verify_token(provider, self.offered_token(request))

    def offered_token(self, request) -> str | None:
        """Return the shared secret from the header, the URL or basic auth."""
        token = request.META.get(TOKEN_HEADER) or request.query_params.get("token")
        if token:
            return token
        scheme, _, encoded = request.META.get("HTTP_AUTHORIZATION", "").partition(" ")
        if scheme.lower() != "basic" or not encoded:
            return None
        try:
            decoded = base64.b64decode(encoded, validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return None
        return decoded.partition(":")[2] or None
