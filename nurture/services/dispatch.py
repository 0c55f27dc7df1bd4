"""Run the cadence steps that are due: claim, record, deliver, advance.

The rules that keep a touch from going out twice:

- A dispatcher claims enrollments (``claimed_until``) before it works them,
  so two dispatchers never hold the same enrollment.
- A touch is recorded as "sending" before its channel is called; the
  (enrollment, step) constraint allows one touch per step, ever.
- A touch found done (sent, task created, skipped) is never delivered
  again: its enrollment only moves on.
- A touch still "sending" once its dispatcher's claim has run out belonged
  to a worker that died mid-send. Nobody knows whether it went out, so it is
  marked failed with UNKNOWN_OUTCOME and never resent.
- A failed send is retried on a later run, once the claim expires, up to
  MAX_SEND_ATTEMPTS attempts in all; then the enrollment moves on.
"""

import datetime as dt
import logging
from collections import defaultdict
from dataclasses import asdict, dataclass

from django.db import connection, transaction
from django.db.models import F, Q

from crm.models import Contact
from nurture import conf
from nurture.channels import Delivery, get_channel, touch_message_id_expression
from nurture.models import Channel, Enrollment, Step, Touch

from .enrollment import exit_enrollments
from .routing import assign_owners
from .schedule import step_due_at
from .send_window import local_send_time

logger = logging.getLogger(__name__)

MAX_SEND_ATTEMPTS = 3
UNKNOWN_OUTCOME = "send outcome unknown; not resent"
DONE_STATUSES = (Touch.Status.SENT, Touch.Status.TASK_CREATED, Touch.Status.SKIPPED)


@dataclass
class DispatchResult:
    """How many enrollments and touches one dispatch run handled, by outcome."""

    claimed: int = 0
    sent: int = 0
    tasks_created: int = 0
    skipped: int = 0
    failed: int = 0
    deferred: int = 0
    exited: int = 0
    completed_enrollments: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


def dispatch_due_touches(
    *, now: dt.datetime, batch_size: int | None = None
) -> DispatchResult:
    """Run the due step of up to ``batch_size`` enrollments and advance them."""
    batch_size = batch_size or conf.get("NURTURE_DISPATCH_BATCH_SIZE")
    result = DispatchResult()
    reconcile_stale_touches(now=now)
    claimed_ids = claim_due_enrollments(now=now, limit=batch_size)
    result.claimed = len(claimed_ids)
    if not claimed_ids:
        return result

    batch = _Batch.load(claimed_ids, now=now)
    with transaction.atomic():
        batch.plan(result)
        batch.record_touches()
    deliveries = batch.deliver()
    with transaction.atomic():
        batch.save_deliveries(deliveries, result)
        batch.advance(result)

    logger.info("Dispatched touches: %s", result.as_dict())
    return result


def claim_due_enrollments(*, now: dt.datetime, limit: int) -> list[int]:
    """Claim up to ``limit`` due enrollments for this dispatcher; return ids.

    On PostgreSQL, rows another dispatcher is claiming are skipped, not
    waited for. SQLite has one writer at a time (immediate transactions),
    so reading and claiming in one transaction is already exclusive; the
    update still re-checks the claim, as a compare-and-set.
    """
    until = now + dt.timedelta(seconds=conf.get("NURTURE_CLAIM_SECONDS"))
    claimable = Q(claimed_until__isnull=True) | Q(claimed_until__lt=now)
    due = Enrollment.objects.due(now).filter(claimable).order_by("next_due_at", "pk")

    with transaction.atomic():
        if connection.features.has_select_for_update_skip_locked:
            due = due.select_for_update(skip_locked=True)
        ids = list(due.values_list("pk", flat=True)[:limit])
        if not ids:
            return []
        claimed = (
            Enrollment.objects.filter(pk__in=ids)
            .filter(claimable)
            .update(claimed_until=until)
        )
    if claimed != len(ids):
        # Only possible if the database let another writer in between;
        # drop the batch rather than risk working rows we do not hold.
        logger.warning("Claimed %d of %d enrollments; skipping", claimed, len(ids))
        return []
    return ids


def reconcile_stale_touches(*, now: dt.datetime) -> int:
    """Mark touches left "sending" by a dispatcher that died as failed.

    TODO(#3): ask the email provider whether such a message went out and
    mark it sent when it did; remove UNKNOWN_OUTCOME handling once every
    configured channel can answer.
    """
    lapsed = Q(enrollment__claimed_until__isnull=True) | Q(
        enrollment__claimed_until__lt=now
    )
    count = (
        Touch.objects.filter(status=Touch.Status.SENDING)
        .filter(lapsed)
        .update(status=Touch.Status.FAILED, detail=UNKNOWN_OUTCOME)
    )
    if count:
        logger.warning("%d touches were left sending; marked failed, not resent", count)
    return count


def email_suppression(contact: Contact) -> str:
    """Return why a contact must get no automated email now, or ""."""
    if not contact.email:
        return "no email address"
    if contact.do_not_email:
        return "do not email"
    if contact.hard_bounced_at is not None:
        return "hard bounced"
    return ""


def exit_reason(contact: Contact) -> str:
    """Return why a contact must leave every cadence now, or ""."""
    if contact.do_not_contact:
        return Enrollment.ExitReason.DO_NOT_CONTACT
    if contact.unsubscribed_at is not None:
        return Enrollment.ExitReason.UNSUBSCRIBED
    return ""


class _Batch:
    """The claimed enrollments of one run and what happens to each.

    Every phase reads or writes the whole batch with a fixed number of
    queries; nothing here queries per enrollment.
    """

    def __init__(self, enrollments, steps, touches, *, now):
        self.now = now
        self.enrollments: dict[int, Enrollment] = {e.pk: e for e in enrollments}
        self.steps: dict[int, list[Step]] = steps
        self.existing: dict[tuple[int, int], Touch] = touches
        self.exits: dict[str, list[Enrollment]] = defaultdict(list)
        self.deferred: dict[dt.datetime, list[int]] = defaultdict(list)
        self.new_touches: list[Touch] = []
        self.retries: list[Touch] = []
        self.skipped_retries: dict[str, list[int]] = defaultdict(list)
        self.sending: list[Touch] = []
        # Enrollments whose current step is finished, with that step.
        self.finished: list[tuple[Enrollment, Step | None]] = []

    @classmethod
    def load(cls, ids: list[int], *, now: dt.datetime) -> "_Batch":
        enrollments = list(
            Enrollment.objects.filter(pk__in=ids).select_related(
                "contact__owner", "contact__account", "cadence__sender"
            )
        )
        steps: dict[int, list[Step]] = defaultdict(list)
        cadence_ids = {e.cadence_id for e in enrollments}
        for step in Step.objects.filter(cadence_id__in=cadence_ids).order_by(
            "cadence_id", "position"
        ):
            steps[step.cadence_id].append(step)
        touches = {
            (t.enrollment_id, t.step_id): t
            for t in Touch.objects.filter(
                enrollment_id__in=ids,
                step__cadence_id__in=cadence_ids,
                step__position__in={e.next_position for e in enrollments},
            )
        }
        return cls(enrollments, steps, touches, now=now)

    def current_step(self, enrollment: Enrollment) -> Step | None:
        # A step deleted since enrollment is passed over, not waited for.
        for step in self.steps[enrollment.cadence_id]:
            if step.position >= enrollment.next_position:
                return step
        return None

    def plan(self, result: DispatchResult):
        """Decide, per enrollment, to exit, wait, skip, deliver or move on."""
        for enrollment in self.enrollments.values():
            contact = enrollment.contact
            step = self.current_step(enrollment)
            reason = exit_reason(contact)
            if reason:
                self.exits[reason].append(enrollment)
                continue
            if step is None:
                self.finished.append((enrollment, None))
                continue

            touch = self.existing.get((enrollment.pk, step.pk))
            if touch is not None and not self._retryable(touch):
                # Done on an earlier run, or given up: only move on.
                self.finished.append((enrollment, step))
                continue

            if step.channel == Channel.EMAIL:
                opening = local_send_time(
                    enrollment.cadence, contact.time_zone, self.now
                )
                if opening is not None:
                    self.deferred[opening].append(enrollment.pk)
                    continue

            skip = self._skip_reason(step, contact)
            if touch is not None and skip:
                # Opted out between a failed attempt and its retry.
                self.skipped_retries[skip].append(touch.pk)
                self.finished.append((enrollment, step))
            elif touch is not None:
                self.retries.append(touch)
            elif skip:
                self.new_touches.append(
                    self._touch(enrollment, step, Touch.Status.SKIPPED, skip)
                )
                self.finished.append((enrollment, step))
            else:
                self.new_touches.append(
                    self._touch(enrollment, step, Touch.Status.SENDING)
                )

        for reason, enrollments in self.exits.items():
            result.exited += exit_enrollments(
                [e.contact_id for e in enrollments], reason, now=self.now
            )
        for opening, ids in self.deferred.items():
            Enrollment.objects.filter(pk__in=ids).update(
                next_due_at=opening, claimed_until=None
            )
            result.deferred += len(ids)
        for detail, ids in self.skipped_retries.items():
            Touch.objects.filter(pk__in=ids).update(
                status=Touch.Status.SKIPPED, detail=detail
            )
            result.skipped += len(ids)
        result.skipped += sum(
            t.status == Touch.Status.SKIPPED for t in self.new_touches
        )

    def _retryable(self, touch: Touch) -> bool:
        return (
            touch.status == Touch.Status.FAILED
            and touch.detail != UNKNOWN_OUTCOME
            and touch.attempts < MAX_SEND_ATTEMPTS
        )

    def _skip_reason(self, step: Step, contact: Contact) -> str:
        if step.channel == Channel.EMAIL:
            return email_suppression(contact)
        # Leads often have no phone on file; the rep looks them up, so only
        # an explicit opt-out skips a call.
        if step.channel == Channel.CALL and contact.do_not_call:
            return "do not call"
        return ""

    def _touch(self, enrollment, step, status, detail="") -> Touch:
        return Touch(
            enrollment=enrollment,
            step=step,
            contact=enrollment.contact,
            channel=step.channel,
            status=status,
            detail=detail,
            created_at=self.now,
            attempts=1 if status == Touch.Status.SENDING else 0,
        )

    def record_touches(self):
        """Write the touches about to be delivered before any is delivered."""
        Touch.objects.bulk_create(self.new_touches, ignore_conflicts=True)
        if self.retries:
            Touch.objects.filter(pk__in=[t.pk for t in self.retries]).update(
                status=Touch.Status.SENDING, attempts=F("attempts") + 1
            )

        # ignore_conflicts leaves no ids behind, and a conflict means the row
        # is someone else's: read back what the database now holds.
        wanted = {
            (t.enrollment_id, t.step_id)
            for t in [*self.new_touches, *self.retries]
            if t.status != Touch.Status.SKIPPED
        }
        if not wanted:
            return
        rows = Touch.objects.filter(
            enrollment_id__in={key[0] for key in wanted},
            step_id__in={key[1] for key in wanted},
            status=Touch.Status.SENDING,
        )
        steps_by_id = {s.pk: s for steps in self.steps.values() for s in steps}
        for touch in rows:
            if (touch.enrollment_id, touch.step_id) not in wanted:
                continue
            enrollment = self.enrollments[touch.enrollment_id]
            touch.enrollment = enrollment
            touch.contact = enrollment.contact
            touch.step = steps_by_id[touch.step_id]
            self.sending.append(touch)

    def deliver(self) -> dict[int, Delivery]:
        """Hand the recorded touches to their channels; return deliveries."""
        self._route_ownerless()
        by_channel: dict[str, list[Touch]] = defaultdict(list)
        for touch in self.sending:
            by_channel[touch.channel].append(touch)
        deliveries = {}
        for name, touches in by_channel.items():
            deliveries.update(get_channel(name, now=self.now).send(touches))
        return deliveries

    def _route_ownerless(self):
        contacts = {
            t.contact.pk: t.contact
            for t in self.sending
            if t.step.is_task and t.contact.owner_id is None
        }
        if not contacts:
            return
        assign_owners(list(contacts.values()), now=self.now)
        owners = Contact.objects.filter(pk__in=list(contacts)).values_list(
            "pk", "owner_id"
        )
        for pk, owner_id in owners:
            contacts[pk].owner_id = owner_id
        unassigned = sum(c.owner_id is None for c in contacts.values())
        if unassigned:
            logger.warning(
                "%d tasks have no assignee: no routing rule matched", unassigned
            )

    def save_deliveries(self, deliveries: dict[int, Delivery], result: DispatchResult):
        """Store each touch's outcome with set-based updates."""
        by_outcome: dict[tuple[str, str, bool], list[int]] = defaultdict(list)
        failed: list[Touch] = []
        for touch in self.sending:
            delivery = deliveries.get(touch.pk)
            if delivery is None:
                continue  # the channel said nothing: the sweep will catch it
            if delivery.status == Touch.Status.FAILED:
                touch.status, touch.detail = delivery.status, delivery.detail
                failed.append(touch)
                continue
            key = (delivery.status, delivery.detail, touch.channel == Channel.EMAIL)
            by_outcome[key].append(touch.pk)
            self.finished.append((touch.enrollment, touch.step))

        for (status, detail, is_email), ids in by_outcome.items():
            changes = {"status": status, "detail": detail}
            if status == Touch.Status.SENT:
                changes["sent_at"] = self.now
            if is_email:
                changes["message_id"] = touch_message_id_expression()
            Touch.objects.filter(pk__in=ids).update(**changes)
            if status == Touch.Status.SENT:
                result.sent += len(ids)
            elif status == Touch.Status.TASK_CREATED:
                result.tasks_created += len(ids)

        Touch.objects.bulk_update(failed, ["status", "detail"])
        result.failed += len(failed)
        for touch in failed:
            if touch.attempts >= MAX_SEND_ATTEMPTS:
                logger.warning(
                    "Touch failed %d times; moving on",
                    touch.attempts,
                    extra={"touch_id": touch.pk},
                )
                self.finished.append((touch.enrollment, touch.step))
        # Failures with attempts left keep their claim and come back once it
        # expires: that is the retry delay.

    def advance(self, result: DispatchResult):
        """Move finished enrollments to their next step or complete them."""
        completed: list[int] = []
        moves: dict[tuple[int, dt.datetime], list[int]] = defaultdict(list)
        for enrollment, step in self.finished:
            following = self._following(enrollment, step)
            if following is None:
                completed.append(enrollment.pk)
            else:
                due_at = step_due_at(following, self.now)
                moves[(following.position, due_at)].append(enrollment.pk)

        active = Enrollment.objects.filter(state=Enrollment.State.ACTIVE)
        for (position, due_at), ids in moves.items():
            active.filter(pk__in=ids).update(
                next_position=position, next_due_at=due_at, claimed_until=None
            )
        if completed:
            result.completed_enrollments += active.filter(pk__in=completed).update(
                state=Enrollment.State.COMPLETED,
                ended_at=self.now,
                next_due_at=None,
                claimed_until=None,
            )

    def _following(self, enrollment: Enrollment, step: Step | None) -> Step | None:
        if step is None:
            return None
        for candidate in self.steps[enrollment.cadence_id]:
            if candidate.position > step.position:
                return candidate
        return None
