"""Skip conditions: named reasons a step is passed over for one contact.

A step lists condition names in ``Step.skip_conditions``. The dispatcher
loads the email history of a whole batch at once with load_histories(), then
asks should_skip() per enrollment without touching the database again.
"""

import logging
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from crm.models import Contact
from nurture.models import Channel, Step, Touch

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class EmailRecord:
    """One email touch an enrollment already made."""

    position: int
    status: str
    opened: bool


@dataclass
class EnrollmentHistory:
    """The email touches of one enrollment, in step order."""

    emails: list[EmailRecord] = field(default_factory=list)

    def previous_email(self, before_position: int) -> EmailRecord | None:
        """Return the last email sent at a step before ``before_position``."""
        earlier = [
            record
            for record in self.emails
            if record.position < before_position and record.status == Touch.Status.SENT
        ]
        return max(earlier, key=lambda record: record.position, default=None)


EMPTY_HISTORY = EnrollmentHistory()

Condition = Callable[[Step, Contact, EnrollmentHistory], bool]

# Condition name -> (test, the reason recorded on the skipped touch).
CONDITIONS: dict[str, tuple[Condition, str]] = {}


def condition(name: str, reason: str):
    """Register a skip condition under ``name``; the test returns True to skip."""

    def register(test: Condition) -> Condition:
        CONDITIONS[name] = (test, reason)
        return test

    return register


@condition("previous_email_not_opened", "previous email not opened")
def _previous_email_not_opened(step, contact, history) -> bool:
    # Without an earlier email there is nothing that went unread.
    previous = history.previous_email(step.position)
    return previous is not None and not previous.opened


@condition("previous_email_opened", "previous email opened")
def _previous_email_opened(step, contact, history) -> bool:
    previous = history.previous_email(step.position)
    return previous is not None and previous.opened


@condition("no_linkedin_url", "no LinkedIn profile URL")
def _no_linkedin_url(step, contact, history) -> bool:
    return not (contact.linkedin_url or "").strip()


@condition("no_phone", "no phone number")
def _no_phone(step, contact, history) -> bool:
    return not (contact.phone or "").strip()


@condition("no_email", "no email address")
def _no_email(step, contact, history) -> bool:
    return not (contact.email or "").strip()


@condition("no_postal_address", "no postal address")
def _no_postal_address(step, contact, history) -> bool:
    # Imported here: direct_mail imports nothing from this module, but
    # keeping the registry free of channel code keeps it small.
    from .direct_mail import postal_address

    return postal_address(contact) is None


def should_skip(
    step: Step, contact: Contact, history: EnrollmentHistory | None = None
) -> str | None:
    """Return why ``step`` is skipped for ``contact``, or None to run it.

    Unknown condition names are ignored (and logged) so a typo in the admin
    never blocks a cadence.
    """
    history = history or EMPTY_HISTORY
    for name in step.skip_conditions or []:
        entry = CONDITIONS.get(name)
        if entry is None:
            logger.warning(
                "Unknown skip condition %r", name, extra={"step_id": step.pk}
            )
            continue
        test, reason = entry
        if test(step, contact, history):
            return reason
    return None


def load_histories(enrollment_ids: Iterable[int]) -> dict[int, EnrollmentHistory]:
    """Return the email history of each enrollment, in one query."""
    histories: dict[int, EnrollmentHistory] = defaultdict(EnrollmentHistory)
    rows = Touch.objects.filter(
        enrollment_id__in=list(enrollment_ids), channel=Channel.EMAIL
    ).values_list("enrollment_id", "step__position", "status", "opened_at")
    for enrollment_id, position, status, opened_at in rows:
        histories[enrollment_id].emails.append(
            EmailRecord(position=position, status=status, opened=opened_at is not None)
        )
    return histories
