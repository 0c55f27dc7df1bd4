"""Out-of-office auto-replies: pause the contact's cadences until they return.

An auto-reply is an ``email_reply`` event that says so, through
``properties.auto_reply``, the Auto-Submitted or X-Autoreply headers (given
in ``properties.headers`` or at the top of ``properties``), or a subject or
body in the usual out-of-office words. It never ends an enrollment as a
reply or an unsubscribe; it pauses it until the day after the return date,
at the start of the cadence's send window in the contact's zone.
"""

import datetime as dt
import logging
import re
from collections.abc import Iterable, Mapping

from django.db import connection, transaction
from django.db.models import Q

from crm.models import EngagementEvent
from nurture import conf
from nurture.models import Enrollment

from .zones import resolve_zone

logger = logging.getLogger(__name__)

OOO = Enrollment.PauseReason.OUT_OF_OFFICE
TRUE_WORDS = frozenset({"1", "true", "yes", "on"})

AUTO_REPLY_HEADERS = ("x-autoreply", "x-autorespond", "x-auto-reply")

# Words an out-of-office message uses and a person's reply rarely does.
OOO_PHRASES = re.compile(
    r"out of (?:the )?office|\bOOO\b|automatic reply|auto-?reply|autoresponse"
    r"|i am currently away|i'm currently away|away from (?:the|my) (?:office|desk)"
    r"|on (?:annual|parental|maternity|paternity|sick) leave"
    r"|limited access to (?:my )?e-?mail|abwesenheitsnotiz|absence du bureau",
    re.IGNORECASE,
)


def is_out_of_office(event: EngagementEvent) -> bool:
    """Say whether an email reply event is an automatic out-of-office answer."""
    if event.type != EngagementEvent.Type.EMAIL_REPLY:
        return False
    properties = event.properties if isinstance(event.properties, Mapping) else {}
    if _truthy(properties.get("auto_reply")):
        return True

    headers = _headers(properties)
    auto_submitted = headers.get("auto-submitted", "").strip().lower()
    if auto_submitted and auto_submitted != "no":
        return True
    if any(_truthy(headers.get(name)) for name in AUTO_REPLY_HEADERS):
        return True
    if headers.get("precedence", "").strip().lower() == "auto_reply":
        return True

    text = " ".join(
        str(properties.get(key) or "") for key in ("subject", "body", "text")
    )
    return bool(OOO_PHRASES.search(text))


def return_date(event: EngagementEvent) -> dt.date | None:
    """Return the date an auto-reply says its sender is back, if it says."""
    properties = event.properties if isinstance(event.properties, Mapping) else {}
    value = properties.get("return_date")
    if not value:
        return None
    try:
        return dt.date.fromisoformat(str(value)[:10])
    except ValueError:
        return None


def pause_for_out_of_office(
    events: Iterable[EngagementEvent], *, now: dt.datetime
) -> int:
    """Pause the enrollments of contacts who sent an auto-reply; return how many.

    Active enrollments pause; ones already paused for an absence move their
    resume time to the new return date. Enrollments paused by a user stay
    as they are. Two queries, whatever the number of events.
    """
    returns: dict[int, dt.date | None] = {}
    for event in events:
        # The latest return date wins when one batch has several replies.
        day = return_date(event)
        known = returns.get(event.contact_id)
        returns[event.contact_id] = max(filter(None, (known, day)), default=None)
    if not returns:
        return 0

    enrollments = list(
        Enrollment.objects.filter(contact_id__in=list(returns))
        .filter(_pausable())
        .select_related("contact__account", "cadence")
    )
    for enrollment in enrollments:
        if enrollment.state == Enrollment.State.ACTIVE:
            enrollment.paused_at = now
        enrollment.state = Enrollment.State.PAUSED
        enrollment.pause_reason = OOO
        enrollment.claimed_until = None
        enrollment.resume_at = resume_time(
            enrollment, returns[enrollment.contact_id], now=now
        )
    Enrollment.objects.bulk_update(
        enrollments,
        ["state", "paused_at", "pause_reason", "resume_at", "claimed_until"],
    )
    if enrollments:
        logger.info("Paused %d enrollments for out of office", len(enrollments))
    return len(enrollments)


def _pausable() -> Q:
    return Q(state=Enrollment.State.ACTIVE) | Q(
        state=Enrollment.State.PAUSED, pause_reason=OOO
    )


def resume_time(
    enrollment: Enrollment, back_on: dt.date | None, *, now: dt.datetime
) -> dt.datetime:
    """Return when an absent contact's enrollment should resume.

    The day after ``back_on``, when the cadence's window opens in the
    contact's zone; NURTURE_OUT_OF_OFFICE_DAYS from ``now`` when the
    auto-reply gave no date; never before ``now``.
    """
    if back_on is None:
        return now + dt.timedelta(days=conf.get("NURTURE_OUT_OF_OFFICE_DAYS"))
    zone = resolve_zone(enrollment.contact).zone
    day = back_on + dt.timedelta(days=1)
    local = dt.datetime.combine(day, enrollment.cadence.send_window_start, zone)
    return max(local.astimezone(dt.UTC), now)


def resume_returned_enrollments(*, now: dt.datetime, batch_size: int = 1000) -> int:
    """Resume enrollments paused for an absence whose resume time has come.

    Each continues at the step where it stopped, with the wait it had left
    when it paused, so no step is skipped or sent twice. Return how many
    resumed.
    """
    with transaction.atomic():
        due = Enrollment.objects.filter(
            state=Enrollment.State.PAUSED, pause_reason=OOO, resume_at__lte=now
        ).order_by("resume_at", "pk")
        if connection.features.has_select_for_update_skip_locked:
            due = due.select_for_update(skip_locked=True)
        enrollments = list(due[:batch_size])
        for enrollment in enrollments:
            if enrollment.next_due_at is not None and enrollment.paused_at is not None:
                left = max(
                    enrollment.next_due_at - enrollment.paused_at, dt.timedelta()
                )
                enrollment.next_due_at = now + left
            enrollment.state = Enrollment.State.ACTIVE
            enrollment.paused_at = None
            enrollment.pause_reason = ""
            enrollment.resume_at = None
        Enrollment.objects.bulk_update(
            enrollments,
            ["state", "paused_at", "pause_reason", "resume_at", "next_due_at"],
        )
    if enrollments:
        logger.info("Resumed %d enrollments after out of office", len(enrollments))
    return len(enrollments)


def _truthy(value) -> bool:
    if isinstance(value, bool):
        return value
    return str(value or "").strip().lower() in TRUE_WORDS


def _headers(properties: Mapping) -> dict[str, str]:
    found = {}
    nested = properties.get("headers")
    for source in (properties, nested if isinstance(nested, Mapping) else {}):
        for key, value in source.items():
            if isinstance(value, str | bool | int):
                found[str(key).lower()] = str(value)
    return found
