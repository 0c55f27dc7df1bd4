"""Put contacts into cadences, pause them, resume them and take them out."""

import datetime as dt
import logging
from collections.abc import Iterable

from django.db import IntegrityError, transaction

from crm.models import Contact
from nurture.models import Cadence, Enrollment

from .errors import NurtureError
from .schedule import step_due_at

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
                next_due_at=step_due_at(first_step, now),
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


def check_reenrollment(contact: Contact, cadence: Cadence, *, now: dt.datetime):
    """Raise NurtureError when the cadence's policy forbids enrolling again."""
    previous = (
        Enrollment.objects.filter(contact=contact, cadence=cadence)
        .order_by("-enrolled_at")
        .values_list("state", "ended_at")
        .first()
    )
    if previous is None:
        return
    state, ended_at = previous
    if state in OPEN_STATES:
        raise NurtureError(
            "the contact is already enrolled in this cadence", field="contact"
        )
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

    Contacts that are marked do-not-contact, or that walked this cadence
    before, are left out. Return how many enrollments were created.
    """
    first_step = cadence.steps.order_by("position").first()
    if first_step is None or not cadence.is_active:
        return 0
    seen = set(
        Enrollment.objects.filter(cadence=cadence).values_list("contact_id", flat=True)
    )
    eligible = Contact.objects.filter(
        pk__in=list(contact_ids), do_not_contact=False
    ).values_list("pk", flat=True)
    due_at = step_due_at(first_step, now)
    new = [
        Enrollment(
            contact_id=pk,
            cadence=cadence,
            next_position=first_step.position,
            next_due_at=due_at,
            enrolled_at=now,
        )
        for pk in eligible
        if pk not in seen
    ]
    Enrollment.objects.bulk_create(new, batch_size=1000, ignore_conflicts=True)
    logger.info("Enrolled %d contacts", len(new), extra={"cadence_id": cadence.pk})
    return len(new)


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
