"""When a cadence may send: its window and weekdays in the contact's zone."""

import datetime as dt
import zoneinfo

from nurture import conf
from nurture.models import Cadence


def local_send_time(
    cadence: Cadence, zone_name: str, now: dt.datetime
) -> dt.datetime | None:
    """Return when the cadence's send window next opens for a contact's zone.

    Return None when ``now`` is inside the window. Unknown zone names fall
    back to NURTURE_DEFAULT_TIME_ZONE.
    """
    zone = _zone(zone_name)
    local = now.astimezone(zone)
    weekdays = set(cadence.weekdays)
    start, end = cadence.send_window_start, cadence.send_window_end
    if start <= end:
        in_hours = start <= local.time() <= end
    else:  # a window across midnight, such as 20:00 to 02:00
        in_hours = local.time() >= start or local.time() <= end
    if in_hours and local.isoweekday() in weekdays:
        return None

    for days_ahead in range(8):
        day = local.date() + dt.timedelta(days=days_ahead)
        opening = dt.datetime.combine(day, start, tzinfo=zone)
        if day.isoweekday() in weekdays and opening > local:
            return opening.astimezone(dt.UTC)
    # No valid weekday configured: sending late beats never sending.
    return None


def _zone(name: str) -> zoneinfo.ZoneInfo:
    default = conf.get("NURTURE_DEFAULT_TIME_ZONE")
    for candidate in (name, default):
        if not candidate:
            continue
        try:
            return zoneinfo.ZoneInfo(candidate)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            continue
    return zoneinfo.ZoneInfo("UTC")
