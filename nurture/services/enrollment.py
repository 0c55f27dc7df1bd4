"""Put contacts into cadences, pause them, resume them and take them out."""

import datetime as dt
import logging
from collections.abc import Iterable

from django.db import IntegrityError, transaction
from django.db.models import F

from crm.models import Contact
from nurture.models import Cadence, Enrollment

from .errors import NurtureError
from .schedule import step_due_at
from .zones import contact_country_code, resolve_zone

logger = logging.getLogger(__name__)

OPEN_STATES = (Enrollment.State.ACTIVE, Enrollment.State.PAUSED)


def enroll_contact(
    contact: Contact, cadence: Cadence, *, now: dt.datetime, actor=None
) -> Enrollment:
    """Start a contact on a cadence's first step, or say why not."""
    first_step = cadence.steps.order_by("position").first()
    if not cadence.is_active:
        raise NurtureError("the cadence is not active", field="cadence")
    if first_step is None:
        raise NurtureError("the cadence has no steps", field="cadence")
    if contact.do_not_contact:
        raise NurtureError("the contact is marked do-not-contact", field="contact")
    check_reenrollment(contact, cadence, now=now)

    try:
        with transaction.atomic():
            enrollment = Enrollment.objects.create(
                contact=contact,
                cadence=cadence,
                next_position=first_step.position,
                next_due_at=first_due_at(first_step, contact, cadence, now=now),
                enrolled_at=now,
                enrolled_by=actor,
            )
    except IntegrityError:
        raise NurtureError(
            "the contact is already enrolled in this cadence", field="contact"
        ) from None
    logger.info(
        "Contact enrolled",
        extra={"contact_id": contact.pk, "cadence_id": cadence.pk},
    )
    return enrollment


def first_due_at(
    first_step, contact: Contact, cadence: Cadence, *, now: dt.datetime
) -> dt.datetime:
    """Return when a new enrollment's first step falls due for this contact."""
    holiday_country = contact_country_code(contact) if cadence.skip_holidays else ""
    return step_due_at(
        first_step,
        now,
        zone=resolve_zone(contact).zone,
        holiday_country=holiday_country,
    )


def check_reenrollment(contact: Contact, cadence: Cadence, *, now: dt.datetime):
    """Raise NurtureError when the cadence's policy forbids enrolling again.

    A contact whose last enrollment ended because it was marked
    do-not-contact may always come back once the flag is cleared, whatever
    the policy: the exit was about the flag, not about the cadence.
    """
    previous = (
        Enrollment.objects.filter(contact=contact, cadence=cadence)
        .order_by("-enrolled_at", "-pk")
        .values_list("state", "ended_at", "exit_reason")
        .first()
    )
    if previous is None:
        return
    state, ended_at, reason = previous
    if state in OPEN_STATES:
        raise NurtureError(
            "the contact is already enrolled in this cadence", field="contact"
        )
    if reason == Enrollment.ExitReason.DO_NOT_CONTACT:
        return
    if cadence.reenrollment == Cadence.Reenrollment.NEVER:
        raise NurtureError("this cadence does not allow re-enrollment", field="cadence")
    wait = dt.timedelta(days=cadence.reenroll_after_days or 0)
    if ended_at is not None and now < ended_at + wait:
        raise NurtureError(
            f"re-enrollment is allowed {cadence.reenroll_after_days} days "
            "after the last enrollment ended",
            field="cadence",
        )


def enroll_contacts(
    contact_ids: Iterable[int], cadence: Cadence, *, now: dt.datetime
) -> int:
    """Enroll many contacts at once, skipping those already enrolled.

    Contacts marked do-not-contact, still enrolled, or whose re-enrollment
    the cadence's policy forbids (see check_reenrollment) are left out.
    Return how many enrollments were created.
    """
    first_step = cadence.steps.order_by("position").first()
    if first_step is None or not cadence.is_active:
        return 0
    ids = list(contact_ids)
    blocked = _reenrollment_blocked(ids, cadence, now=now)
    contacts = Contact.objects.filter(pk__in=ids, do_not_contact=False).select_related(
        "account"
    )
    new = [
        Enrollment(
            contact_id=contact.pk,
            cadence=cadence,
            next_position=first_step.position,
            next_due_at=first_due_at(first_step, contact, cadence, now=now),
            enrolled_at=now,
        )
        for contact in contacts
        if contact.pk not in blocked
    ]
    Enrollment.objects.bulk_create(new, batch_size=1000, ignore_conflicts=True)
    logger.info("Enrolled %d contacts", len(new), extra={"cadence_id": cadence.pk})
    return len(new)


def _reenrollment_blocked(
    contact_ids: list[int], cadence: Cadence, *, now: dt.datetime
) -> set[int]:
    # The latest enrollment of each contact decides, as in check_reenrollment.
    latest: dict[int, tuple] = {}
    rows = (
        Enrollment.objects.filter(cadence=cadence, contact_id__in=contact_ids)
        .order_by("enrolled_at", "pk")
        .values_list("contact_id", "state", "ended_at", "exit_reason")
    )
    for contact_id, *previous in rows:
        latest[contact_id] = previous
    wait = dt.timedelta(days=cadence.reenroll_after_days or 0)
    blocked = set()
    for contact_id, (state, ended_at, reason) in latest.items():
        if state in OPEN_STATES:
            blocked.add(contact_id)
        elif reason == Enrollment.ExitReason.DO_NOT_CONTACT:
            continue
        elif cadence.reenrollment == Cadence.Reenrollment.NEVER:
            blocked.add(contact_id)
        elif ended_at is not None and now < ended_at + wait:
            blocked.add(contact_id)
    return blocked


def pause_enrollment(enrollment: Enrollment, *, now: dt.datetime) -> Enrollment:
    """Hold an active enrollment where it is."""
    updated = Enrollment.objects.filter(
        pk=enrollment.pk, state=Enrollment.State.ACTIVE
    ).update(state=Enrollment.State.PAUSED, paused_at=now)
    if not updated:
        raise NurtureError("only an active enrollment can be paused", field="state")
    enrollment.refresh_from_db()
    return enrollment


def resume_enrollment(enrollment: Enrollment, *, now: dt.datetime) -> Enrollment:
    """Continue a paused enrollment at the step where it stopped.

    The wait that was left when it paused is kept, so the next step neither
    fires at once nor is skipped.
    """
    with transaction.atomic():
        locked = (
            Enrollment.objects.select_for_update()
            .filter(pk=enrollment.pk, state=Enrollment.State.PAUSED)
            .first()
        )
        if locked is None:
            raise NurtureError("only a paused enrollment can be resumed", field="state")
        if locked.next_due_at is not None and locked.paused_at is not None:
            remaining = max(locked.next_due_at - locked.paused_at, dt.timedelta())
            locked.next_due_at = now + remaining
        locked.state = Enrollment.State.ACTIVE
        locked.paused_at = None
        locked.save(update_fields=["state", "paused_at", "next_due_at"])
    return locked


def pause_cadence(cadence: Cadence, *, now: dt.datetime) -> Cadence:
    """Hold every enrollment of a cadence where it is, until resumed.

    The dispatcher passes over enrollments of a paused cadence without
    claiming or advancing them.
    """
    updated = Cadence.objects.filter(pk=cadence.pk, paused_at__isnull=True).update(
        paused_at=now
    )
    if not updated:
        raise NurtureError("the cadence is already paused", field="paused_at")
    logger.info("Cadence paused", extra={"cadence_id": cadence.pk})
    cadence.refresh_from_db(fields=["paused_at"])
    return cadence


def resume_cadence(cadence: Cadence, *, now: dt.datetime) -> Cadence:
    """Let a paused cadence run again, each step as far off as when it paused.

    Every active enrollment's next step moves later by the length of the
    pause, so no step fires early because of it and none is skipped.
    Enrollments paused one by one keep their own pause.
    """
    with transaction.atomic():
        locked = (
            Cadence.objects.select_for_update()
            .filter(pk=cadence.pk, paused_at__isnull=False)
            .first()
        )
        if locked is None:
            raise NurtureError("the cadence is not paused", field="paused_at")
        pause = max(now - locked.paused_at, dt.timedelta())
        Enrollment.objects.filter(
            cadence=locked,
            state=Enrollment.State.ACTIVE,
            next_due_at__isnull=False,
        ).update(next_due_at=F("next_due_at") + pause)
        locked.paused_at = None
        locked.save(update_fields=["paused_at"])
    logger.info("Cadence resumed", extra={"cadence_id": cadence.pk})
    cadence.paused_at = None
    return cadence


def exit_enrollments(
    contact_ids: Iterable[int],
    reason: str,
    *,
    now: dt.datetime,
    cadence_ids: Iterable[int] | None = None,
) -> int:
    """End the open enrollments of these contacts with a reason.

    With ``cadence_ids``, only enrollments in those cadences end. Return how
    many enrollments ended.
    """
    enrollments = Enrollment.objects.filter(
        contact_id__in=list(contact_ids), state__in=OPEN_STATES
    )
    if cadence_ids is not None:
        enrollments = enrollments.filter(cadence_id__in=list(cadence_ids))
    ended = enrollments.update(
        state=Enrollment.State.EXITED,
        exit_reason=reason,
        ended_at=now,
        next_due_at=None,
    )
    if ended:
        logger.info("Ended %d enrollments: %s", ended, reason)
    return ended


def remove_enrollment(enrollment: Enrollment, *, now: dt.datetime) -> Enrollment:
    """Take one contact out of a cadence by hand."""
    updated = Enrollment.objects.filter(pk=enrollment.pk, state__in=OPEN_STATES).update(
        state=Enrollment.State.EXITED,
        exit_reason=Enrollment.ExitReason.MANUAL,
        ended_at=now,
        next_due_at=None,
    )
    if not updated:
        raise NurtureError("the enrollment has already ended", field="state")
    enrollment.refresh_from_db()
    return enrollment
