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
- A failed send is retried with growing waits (Touch.retry_at, from
  NURTURE_RETRY_BACKOFF_MINUTES) up to NURTURE_MAX_SEND_ATTEMPTS attempts
  in all; then it stays failed and the enrollment moves on.

Before anything is recorded, each due step is held against the contact's
protections, in this order: leave the cadence (do-not-contact,
unsubscribed, complained); wait for the send window in the contact's zone
(automated steps only); skip an email the contact must not get; wait for
the frequency cap. Waiting moves ``next_due_at``; nothing is dropped.
"""

import datetime as dt
import logging
from collections import defaultdict
from dataclasses import asdict, dataclass

from django.contrib.auth import get_user_model
from django.db import connection, transaction
from django.db.models import F, Q
from django.db.models.base import ModelState

from crm.models import Account, Contact, Rep
from nurture import conf
from nurture.channels import Delivery, get_channel, touch_message_id_expression
from nurture.models import TASK_CHANNELS, Cadence, Channel, Enrollment, Step, Touch

from .batching import collection_paused
from .business_hours import calendar_for, next_working_moment
from .enrollment import exit_enrollments
from .frequency import FrequencyCap
from .ids import ids_in
from .routing import assign_owners
from .schedule import step_due_at
from .send_window import next_send_time
from .skips import load_histories, should_skip
from .suppression import email_suppression, exit_reason
from .variants import choose_variant, competing_variants
from .zones import ResolvedZone, contact_country_code, resolve_zone

logger = logging.getLogger(__name__)

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

    with collection_paused():
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
    due = (
        Enrollment.objects.due(now)
        .filter(claimable, cadence__paused_at__isnull=True)
        .order_by("next_due_at", "pk")
    )

    with transaction.atomic():
        if connection.features.has_select_for_update_skip_locked:
            due = due.select_for_update(skip_locked=True, of=("self",))
        ids = list(due.values_list("pk", flat=True)[:limit])
        if not ids:
            return []
        claimed = (
            Enrollment.objects.filter(ids_in("pk", ids))
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


def max_send_attempts() -> int:
    """Return how many times one touch may be tried before it fails for good."""
    return conf.get("NURTURE_MAX_SEND_ATTEMPTS")


def retry_delay(attempts: int) -> dt.timedelta:
    """Return how long to wait after the ``attempts``-th failed attempt."""
    minutes = list(conf.get("NURTURE_RETRY_BACKOFF_MINUTES")) or [5]
    return dt.timedelta(minutes=minutes[min(attempts, len(minutes)) - 1])


# Columns a new touch is written with; the others start out NULL.
_INSERT_COLUMNS = (
    "enrollment_id",
    "step_id",
    "variant_id",
    "contact_id",
    "channel",
    "status",
    "created_at",
    "message_id",
    "provider_message_id",
    "outcome",
    "detail",
    "attempts",
    "local_zone",
)


def insert_touches(rows: list[tuple]) -> None:
    """Insert new touches in one statement, leaving rows that already exist.

    Each row holds the values of _INSERT_COLUMNS, in that order, ready for
    the database. Like bulk_create(ignore_conflicts=True), but as one
    executemany: SQLite caps the parameters of a single INSERT, so
    bulk_create would split a batch into dozens of statements, and building
    each model's SQL values costs more than the insert itself. (On
    PostgreSQL, psycopg pipelines an executemany; one multi-row INSERT
    measured slower.)
    """
    if not rows:
        return
    quote = connection.ops.quote_name
    sql = "INSERT INTO {} ({}) VALUES ({}) ON CONFLICT DO NOTHING".format(
        quote(Touch._meta.db_table),
        ", ".join(quote(column) for column in _INSERT_COLUMNS),
        ", ".join(["%s"] * len(_INSERT_COLUMNS)),
    )
    with connection.cursor() as cursor:
        cursor.executemany(sql, rows)


# Loaded with every enrollment yet read by nothing a batch does (nor by
# email templates, which see names, titles and addresses): not loading them
# saves a fifth of the load. The held-out outcome must never be read.
# Channels get the enrollment for its cadence; its own dates stay unloaded.
_UNUSED_FIELDS = (
    "enrolled_at",
    "enrolled_by",
    "paused_at",
    "resume_at",
    "ended_at",
    "claimed_until",
    *(
        f"contact__{name}"
        for name in (
            "score_explanation",
            "intent_scored_at",
            "mql_at",
            "sql_at",
            "created_at",
            "updated_at",
            "consent_recorded_at",
            "known_converted",
        )
    ),
    *(f"contact__owner__{name}" for name in ("password", "last_login", "date_joined")),
)


class _EnrollmentLoader:
    """Load enrollments with their contact, its owner and its account.

    What select_related("contact") and prefetch_related("contact__owner",
    "contact__account") with _UNUSED_FIELDS deferred give, in at most three
    queries, at half the cost per row. Owners and accounts are shared by
    many contacts, so each is loaded once, not joined to every row. A
    queryset builds each instance through Model.__init__, matching the
    loaded columns to fields by name per row; here each model's slice of
    the row becomes its instance's attributes directly (see _loaded).
    """

    def __init__(self):
        self.db = Enrollment.objects.db
        self.columns: list[str] = []
        self.parts: list[tuple[type, list[str], int, int]] = []
        for prefix, model in (("", Enrollment), ("contact__", Contact)):
            loaded = _loaded_fields(model, prefix)
            start = len(self.columns)
            self.columns += [f"{prefix}{name}" for name in loaded]
            self.parts.append((model, loaded, start, len(self.columns)))

    def load(self, ids: list[int]) -> list[Enrollment]:
        rows = Enrollment.objects.filter(ids_in("pk", ids)).values_list(*self.columns)
        contact_field = Enrollment._meta.get_field("contact")
        (_, enrollment_names, _, split), (_, contact_names, _, _) = self.parts
        enrollments, contacts = [], []
        for row in rows:
            enrollment = _loaded(
                Enrollment, zip(enrollment_names, row[:split], strict=True), self.db
            )
            contact = _loaded(
                Contact, zip(contact_names, row[split:], strict=True), self.db
            )
            contact_field.set_cached_value(enrollment, contact)
            enrollments.append(enrollment)
            contacts.append(contact)
        self.attach(contacts, "owner", get_user_model(), "contact__owner__")
        self.attach(contacts, "account", Account, "contact__account__")
        return enrollments

    def attach(self, contacts: list[Contact], name: str, model, prefix: str):
        """Load the ``name`` of each contact once per distinct id, and set it."""
        field = Contact._meta.get_field(name)
        wanted = {getattr(c, field.attname) for c in contacts} - {None}
        found = {}
        if wanted:
            names = _loaded_fields(model, prefix)
            rows = model._base_manager.filter(ids_in("pk", wanted)).values_list(*names)
            found = {
                row[0]: _loaded(model, zip(names, row, strict=True), self.db)
                for row in rows
            }
        for contact in contacts:
            field.set_cached_value(contact, found.get(getattr(contact, field.attname)))


def _loaded_fields(model, prefix: str) -> list[str]:
    # The attnames of the fields a batch loads, primary key first.
    return [
        f.attname
        for f in model._meta.concrete_fields
        if f"{prefix}{f.name}" not in _UNUSED_FIELDS
    ]


_UNUSED_CADENCE_FIELDS = (
    "description",
    "created_at",
    *(f"sender__{name}" for name in ("password", "last_login", "date_joined")),
)


def _attach(touch: Touch, enrollment: Enrollment, step: Step) -> None:
    # Channels read a touch's enrollment, contact and step: hand them the
    # batch's instances, as select_related would, without a query.
    _ENROLLMENT_FIELD.set_cached_value(touch, enrollment)
    _CONTACT_FIELD.set_cached_value(touch, enrollment.contact)
    _STEP_FIELD.set_cached_value(touch, step)


_ENROLLMENT_FIELD = Touch._meta.get_field("enrollment")
_CONTACT_FIELD = Touch._meta.get_field("contact")
_STEP_FIELD = Touch._meta.get_field("step")
_VARIANT_FIELD = Touch._meta.get_field("variant")


class _TouchBuilder:
    """Make the Touch instances of rows just written, as loading them would.

    Touch(**fields) resolves every keyword and related object for each
    touch; these rows' values are all known, so each instance starts from
    the batch's defaults and takes its own ids, as _loaded() describes.
    """

    def __init__(self, *, now: dt.datetime):
        self.defaults = {
            f.attname: f.get_default() for f in Touch._meta.concrete_fields
        }
        self.defaults.update(status=Touch.Status.SENDING, created_at=now)
        self.db = Touch.objects.db

    def __call__(self, pk, enrollment, step, variant, label, attempts) -> Touch:
        attributes = {
            **self.defaults,
            "id": pk,
            "enrollment_id": enrollment.pk,
            "step_id": step.pk,
            "contact_id": enrollment.contact_id,
            "variant_id": variant.pk if variant is not None else None,
            "channel": step.channel,
            "attempts": attempts,
            "local_zone": label,
        }
        touch = _loaded(Touch, attributes, self.db)
        _attach(touch, enrollment, step)
        if variant is not None:
            _VARIANT_FIELD.set_cached_value(touch, variant)
        return touch


def _loaded(model, attributes, db: str):
    """Return an instance of ``model`` holding ``attributes``, read from ``db``.

    What Model.from_db gives for the same values, without matching each
    value to its field again: Model.__init__ only stores each field's value
    under its attname (and sends pre_init and post_init, which no model
    loaded here has receivers for). A field left out is deferred.
    """
    instance = model.__new__(model)
    instance.__dict__.update(attributes)
    instance._state = state = ModelState()
    state.adding, state.db = False, db
    return instance


class _Batch:
    """The claimed enrollments of one run and what happens to each.

    Every phase reads or writes the whole batch with a fixed number of
    queries; nothing here queries per enrollment. Window and wait
    arithmetic is memoised per cadence, step and zone, since a batch holds
    many contacts of few zones.
    """

    def __init__(self, enrollments, steps, touches, cap, *, now):
        self.now = now
        self.enrollments: dict[int, Enrollment] = {e.pk: e for e in enrollments}
        self.steps: dict[int, list[Step]] = steps
        self.steps_by_id = {s.pk: s for group in steps.values() for s in group}
        self.existing: dict[tuple[int, int], Touch] = touches
        self.cap: FrequencyCap = cap
        self.exits: dict[str, list[Enrollment]] = defaultdict(list)
        self.deferred: dict[dt.datetime, list[int]] = defaultdict(list)
        # Touches to create, as (enrollment, step, status, detail, zone
        # label, variant): model instances are built only for those sent.
        self.new_touches: list[tuple] = []
        self.retries: list[Touch] = []
        self.skipped_retries: dict[str, list[int]] = defaultdict(list)
        self.lost: list[int] = []
        self.sending: list[Touch] = []
        # Enrollments whose current step is finished, with that step.
        self.finished: list[tuple[Enrollment, Step | None]] = []
        self._zones: dict[tuple, tuple[ResolvedZone, str, str]] = {}
        self._windows: dict[tuple, dt.datetime | None] = {}
        self._waits: dict[tuple, dt.datetime] = {}
        self._variants: dict[int, list] = {}

    @classmethod
    def load(cls, ids: list[int], *, now: dt.datetime) -> "_Batch":
        enrollments = _EnrollmentLoader().load(ids)
        # A batch holds many enrollments of few cadences: load each cadence
        # once and share it, rather than build one per joined row.
        cadence_ids = {e.cadence_id for e in enrollments}
        cadences = Cadence.objects.filter(pk__in=cadence_ids).select_related("sender")
        cadences = {c.pk: c for c in cadences.defer(*_UNUSED_CADENCE_FIELDS)}
        cadence_field = Enrollment._meta.get_field("cadence")
        for enrollment in enrollments:
            cadence_field.set_cached_value(enrollment, cadences[enrollment.cadence_id])
        steps: dict[int, list[Step]] = defaultdict(list)
        for step in (
            Step.objects.filter(cadence_id__in=cadence_ids)
            .prefetch_related("variants")
            .order_by("cadence_id", "position")
        ):
            steps[step.cadence_id].append(step)
        touches = {
            (t.enrollment_id, t.step_id): t
            for t in Touch.objects.filter(
                ids_in("enrollment_id", ids),
                step__cadence_id__in=cadence_ids,
                step__position__in={e.next_position for e in enrollments},
            )
        }
        cap = FrequencyCap.load({e.contact_id for e in enrollments}, now=now)
        batch = cls(enrollments, steps, touches, cap, now=now)
        # Skip conditions read the batch's email history, loaded once.
        conditional = any(s.skip_conditions for group in steps.values() for s in group)
        batch.histories = load_histories(ids) if conditional else {}
        return batch

    def current_step(self, enrollment: Enrollment) -> Step | None:
        # A step deleted since enrollment is passed over, not waited for.
        for step in self.steps[enrollment.cadence_id]:
            if step.position >= enrollment.next_position:
                return step
        return None

    def plan(self, result: DispatchResult):
        """Decide, per enrollment, to exit, wait, skip, deliver or move on."""
        for enrollment in self.enrollments.values():
            self._plan_one(enrollment)

        for reason, enrollments in self.exits.items():
            result.exited += exit_enrollments(
                [e.contact_id for e in enrollments], reason, now=self.now
            )
        for due_at, ids in self.deferred.items():
            Enrollment.objects.filter(ids_in("pk", ids)).update(
                next_due_at=due_at, claimed_until=None
            )
            result.deferred += len(ids)
        for detail, ids in self.skipped_retries.items():
            Touch.objects.filter(ids_in("pk", ids)).update(
                status=Touch.Status.SKIPPED, detail=detail, retry_at=None
            )
            result.skipped += len(ids)
        if self.lost:
            Touch.objects.filter(ids_in("pk", self.lost)).update(
                status=Touch.Status.FAILED, detail=UNKNOWN_OUTCOME
            )
            result.failed += len(self.lost)
        result.skipped += sum(
            row[2] == Touch.Status.SKIPPED for row in self.new_touches
        )

    def _plan_one(self, enrollment: Enrollment):
        contact = enrollment.contact
        reason = exit_reason(contact)
        if reason:
            self.exits[reason].append(enrollment)
            return
        step = self.current_step(enrollment)
        if step is None:
            self.finished.append((enrollment, None))
            return

        touch = self.existing.get((enrollment.pk, step.pk))
        if touch is not None and touch.status == Touch.Status.SENDING:
            # We hold the claim, so whoever left it sending is gone; nobody
            # knows whether it went out, so it is never sent again.
            self.lost.append(touch.pk)
            self.finished.append((enrollment, step))
            return
        if touch is not None and not self._retryable(touch):
            # Done on an earlier run, or given up: only move on.
            self.finished.append((enrollment, step))
            return
        if touch is not None and touch.retry_at and touch.retry_at > self.now:
            self.deferred[touch.retry_at].append(enrollment.pk)
            return

        label = self.zone_of(contact)[2]
        if not step.is_task:
            opening = self.window_opening(enrollment, step, self.now)
            if opening is not None:
                self.deferred[opening].append(enrollment.pk)
                return

        skip = self._skip_reason(step, contact) or should_skip(
            step, contact, self.histories.get(enrollment.pk)
        )
        if skip:
            if touch is not None:
                # Opted out between a failed attempt and its retry.
                self.skipped_retries[skip].append(touch.pk)
            else:
                self.new_touches.append(
                    self._touch(enrollment, step, label, Touch.Status.SKIPPED, skip)
                )
            self.finished.append((enrollment, step))
            return

        release = self.cap.release_time(contact.pk, self.now)
        if release is not None:
            if not step.is_task:
                release = self.window_opening(enrollment, step, release) or release
            self.deferred[release].append(enrollment.pk)
            return
        self.cap.record(contact.pk, self.now)

        if touch is not None:
            self.retries.append(touch)
        else:
            self.new_touches.append(
                self._touch(enrollment, step, label, Touch.Status.SENDING)
            )

    def zone_of(self, contact: Contact) -> tuple[ResolvedZone, str, str]:
        """Return the contact's zone, holiday country (ISO code) and label.

        Both follow from the contact's zone and country and its account's,
        which most contacts of a batch share: each is worked out once.
        """
        key = (contact.time_zone, contact.country, contact.account_id)
        found = self._zones.get(key)
        if found is None:
            zone = resolve_zone(contact)
            found = self._zones[key] = (
                zone,
                contact_country_code(contact),
                zone.label,
            )
        return found

    def window_opening(
        self, enrollment: Enrollment, step: Step, moment: dt.datetime
    ) -> dt.datetime | None:
        """Return when the send window next opens after ``moment``, or None."""
        cadence = enrollment.cadence
        zone, country, _ = self.zone_of(enrollment.contact)
        holiday_country = country if cadence.skip_holidays else ""
        key = (cadence.pk, zone.zone.key, holiday_country, step.send_at_local, moment)
        if key not in self._windows:
            self._windows[key] = next_send_time(
                cadence,
                zone.zone,
                moment,
                holiday_country=holiday_country,
                at_local=step.send_at_local,
            )
        return self._windows[key]

    def due_at(self, enrollment: Enrollment, step: Step) -> dt.datetime:
        """Return when ``step`` falls due if the previous one ran now."""
        zone, country, _ = self.zone_of(enrollment.contact)
        holiday_country = country if enrollment.cadence.skip_holidays else ""
        key = (step.pk, zone.zone.key, holiday_country)
        if key not in self._waits:
            self._waits[key] = step_due_at(
                step, self.now, zone=zone.zone, holiday_country=holiday_country
            )
        return self._waits[key]

    def _retryable(self, touch: Touch) -> bool:
        return (
            touch.status == Touch.Status.FAILED
            and touch.detail != UNKNOWN_OUTCOME
            and touch.attempts < max_send_attempts()
        )

    def _skip_reason(self, step: Step, contact: Contact) -> str:
        if step.channel == Channel.EMAIL:
            return email_suppression(contact)
        # Leads often have no phone on file; the rep looks them up, so only
        # an explicit opt-out skips a call.
        if step.channel == Channel.CALL and contact.do_not_call:
            return "do not call"
        return ""

    def _touch(self, enrollment, step, label, status, detail="") -> tuple:
        variant = self.variant_for(step, enrollment.contact)
        return (enrollment, step, status, detail, label, variant)

    def variant_for(self, step: Step, contact: Contact):
        """Return the A/B variant of an email step this contact gets."""
        if step.channel != Channel.EMAIL:
            return None
        if step.pk not in self._variants:
            self._variants[step.pk] = competing_variants(step)
        return choose_variant(step, contact, variants=self._variants[step.pk])

    def record_touches(self):
        """Write the touches about to be delivered before any is delivered."""
        # Every touch of a batch shares its created_at: adapt it once.
        created_at = connection.ops.adapt_datetimefield_value(self.now)
        insert_touches(
            [
                (
                    enrollment.pk,
                    step.pk,
                    variant.pk if variant is not None else None,
                    enrollment.contact_id,
                    step.channel,
                    status,
                    created_at,
                    "",
                    "",
                    "",
                    detail,
                    1 if status == Touch.Status.SENDING else 0,
                    label,
                )
                for enrollment, step, status, detail, label, variant in (
                    self.new_touches
                )
            ]
        )
        if self.retries:
            Touch.objects.filter(ids_in("pk", [t.pk for t in self.retries])).update(
                status=Touch.Status.SENDING,
                attempts=F("attempts") + 1,
                retry_at=None,
            )

        # The insert leaves no ids behind, and a conflict means the row is
        # someone else's: read back which rows the database now holds as
        # sending, ids only, and deliver the touches planned here for them.
        planned = {
            (row[0].pk, row[1].pk): row
            for row in self.new_touches
            if row[2] != Touch.Status.SKIPPED
        }
        retried = {(t.enrollment_id, t.step_id): t for t in self.retries}
        if not planned and not retried:
            return
        rows = Touch.objects.filter(
            ids_in("enrollment_id", {key[0] for key in [*planned, *retried]}),
            ids_in("step_id", {key[1] for key in [*planned, *retried]}),
            status=Touch.Status.SENDING,
        ).values_list("pk", "enrollment_id", "step_id", "attempts")
        build = _TouchBuilder(now=self.now)
        for pk, enrollment_id, step_id, attempts in rows:
            key = (enrollment_id, step_id)
            if key in planned:
                enrollment, step, _, _, label, variant = planned[key]
                touch = build(pk, enrollment, step, variant, label, attempts)
            elif key in retried:
                touch = retried[key]
                touch.attempts = attempts
                touch.status, touch.retry_at = Touch.Status.SENDING, None
                enrollment = self.enrollments[enrollment_id]
                _attach(touch, enrollment, self.steps_by_id[step_id])
            else:
                continue
            self.sending.append(touch)

    def deliver(self) -> dict[int, Delivery]:
        """Hand the recorded touches to their channels; return deliveries."""
        tasks = [t for t in self.sending if t.channel in TASK_CHANNELS]
        if tasks:
            self._route_ownerless(tasks)
            self._schedule_tasks(tasks)
        by_channel: dict[str, list[Touch]] = defaultdict(list)
        for touch in self.sending:
            by_channel[touch.channel].append(touch)
        deliveries = {}
        for name, touches in by_channel.items():
            deliveries.update(get_channel(name, now=self.now).send(touches))
        return deliveries

    def _route_ownerless(self, tasks: list[Touch]):
        contacts = {
            t.contact.pk: t.contact for t in tasks if t.contact.owner_id is None
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

    def _schedule_tasks(self, tasks: list[Touch]):
        # A rep task is due when its rep next works (zone, hours, weekdays,
        # holidays, absence); a contact owned by a user without a rep
        # profile gets it due at once.
        owner_ids = {t.contact.owner_id for t in tasks if t.contact.owner_id}
        if not owner_ids:
            return
        due: dict[int, dt.datetime] = {}
        for rep in Rep.objects.filter(user_id__in=owner_ids):
            try:
                due[rep.user_id] = next_working_moment(calendar_for(rep), self.now)
            except ValueError:
                logger.warning(
                    "Rep has no working time ahead", extra={"rep_id": rep.pk}
                )
        for touch in tasks:
            touch.task_due_at = due.get(touch.contact.owner_id, self.now)

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
            Touch.objects.filter(ids_in("pk", ids)).update(**changes)
            if status == Touch.Status.SENT:
                result.sent += len(ids)
            elif status == Touch.Status.TASK_CREATED:
                result.tasks_created += len(ids)
            elif status == Touch.Status.SKIPPED:
                result.skipped += len(ids)

        self._schedule_retries(failed)
        result.failed += len(failed)

    def _schedule_retries(self, failed: list[Touch]):
        # A failure with attempts left waits for its backoff on the touch
        # and on the enrollment (released, so any dispatcher may retry it);
        # one out of attempts stays failed and its enrollment moves on.
        retries: dict[dt.datetime, list[int]] = defaultdict(list)
        for touch in failed:
            if touch.attempts >= max_send_attempts():
                logger.warning(
                    "Touch failed %d times; moving on",
                    touch.attempts,
                    extra={"touch_id": touch.pk},
                )
                touch.retry_at = None
                self.finished.append((touch.enrollment, touch.step))
            else:
                touch.retry_at = self.now + retry_delay(touch.attempts)
                retries[touch.retry_at].append(touch.enrollment_id)
        Touch.objects.bulk_update(failed, ["status", "detail", "retry_at"])
        for retry_at, ids in retries.items():
            Enrollment.objects.filter(
                ids_in("pk", ids), state=Enrollment.State.ACTIVE
            ).update(next_due_at=retry_at, claimed_until=None)

    def advance(self, result: DispatchResult):
        """Move finished enrollments to their next step or complete them."""
        completed: list[int] = []
        moves: dict[tuple[int, dt.datetime], list[int]] = defaultdict(list)
        for enrollment, step in self.finished:
            following = self._following(enrollment, step)
            if following is None:
                completed.append(enrollment.pk)
            else:
                due_at = self.due_at(enrollment, following)
                moves[(following.position, due_at)].append(enrollment.pk)

        active = Enrollment.objects.filter(state=Enrollment.State.ACTIVE)
        for (position, due_at), ids in moves.items():
            active.filter(ids_in("pk", ids)).update(
                next_position=position, next_due_at=due_at, claimed_until=None
            )
        if completed:
            result.completed_enrollments += active.filter(
                ids_in("pk", completed)
            ).update(
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
