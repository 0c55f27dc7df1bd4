"""Field validators shared by forms, the admin and the API."""

from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django.core.exceptions import ValidationError


def validate_time_zone(value: str) -> None:
    """Accept blank or an IANA time zone name such as Asia/Kolkata."""
    if not value:
        return
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValidationError(
            "%(value)s is not a known time zone; use an IANA name such as "
            "Europe/London or Asia/Kolkata.",
            code="invalid_time_zone",
            params={"value": value},
        ) from None
