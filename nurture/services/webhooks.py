"""Tell integrations about handoff events through a signed webhook outbox.

A state change calls ``enqueue_webhook`` inside its own transaction, so a
delivery row exists exactly when the change committed. ``deliver_webhooks``
later POSTs due rows, signs each body with the subscription's secret and
retries failures with exponential backoff until NURTURE_WEBHOOK_MAX_ATTEMPTS.
"""

import datetime as dt
import hashlib
import hmac
import json
import logging
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import asdict, dataclass

from django.core.serializers.json import DjangoJSONEncoder
from django.db import connection, transaction
from django.db.models import Case, DateTimeField, Value, When

from nurture import conf
from nurture.models import WebhookDelivery, WebhookSubscription

logger = logging.getLogger(__name__)

EVENTS = (
    "handoff.created",
    "handoff.accepted",
    "handoff.rejected",
    "handoff.breached",
    "handoff.escalated",
    "handoff.reassigned",
)

SIGNATURE_HEADER = "X-Nurture-Signature"
EVENT_HEADER = "X-Nurture-Event"
IDEMPOTENCY_HEADER = "Idempotency-Key"


@dataclass
class DeliveryResult:
    """How many deliveries one batch delivered, will retry or gave up on."""

    claimed: int = 0
    delivered: int = 0
    retrying: int = 0
    failed: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


def enqueue_webhook(event: str, payload: dict, *, now: dt.datetime) -> int:
    """Queue one delivery of ``event`` per active subscription that wants it.

    Call inside the transaction that makes the change, so the rows commit
    or roll back with it. Return how many deliveries were queued.
    """
    return enqueue_webhooks(event, [payload], now=now)


def enqueue_webhooks(event: str, payloads: list[dict], *, now: dt.datetime) -> int:
    """Queue ``event`` once per payload for every subscription that wants it.

    Two queries however many payloads: the subscriptions, then one bulk
    insert. Call inside the transaction that makes the changes. Return how
    many deliveries were queued.
    """
    if event not in EVENTS:
        raise ValueError(f"unknown webhook event {event!r}")
    subscriptions = [
        subscription
        for subscription in WebhookSubscription.objects.filter(is_active=True)
        if not subscription.events or event in subscription.events
    ]
    if not subscriptions or not payloads:
        return 0
    # Round-trip through JSON once so the stored payload is what is sent.
    data = json.loads(json.dumps(payloads, cls=DjangoJSONEncoder))
    deliveries = [
        WebhookDelivery(
            subscription=subscription,
            event=event,
            payload=payload,
            next_attempt_at=now,
            created_at=now,
        )
        for payload in data
        for subscription in subscriptions
    ]
    WebhookDelivery.objects.bulk_create(deliveries)
    return len(deliveries)


def sign(secret: str, body: bytes) -> str:
    """Return the signature header value of a body: ``sha256=<hex digest>``."""
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def deliver_webhooks(
    *, now: dt.datetime, batch_size: int | None = None
) -> DeliveryResult:
    """POST one batch of due deliveries and record each outcome as it comes.

    Rows are claimed first by pushing their next attempt past the time this
    worker could still be busy before it has sent them, so a second worker
    running meanwhile skips them (see ``_claim``). Each outcome is written
    as soon as its request ends, guarded by the claim, so a worker that
    overran its lease cannot overwrite what another worker recorded. The
    delivery id travels as the idempotency key for receivers that see a
    retry.
    """
    batch_size = batch_size or conf.get("NURTURE_WEBHOOK_BATCH_SIZE")
    deliveries = _claim(now=now, batch_size=batch_size)
    result = DeliveryResult(claimed=len(deliveries))

    max_attempts = conf.get("NURTURE_WEBHOOK_MAX_ATTEMPTS")
    for delivery in deliveries:
        status, error = _post(delivery, now=now)
        attempts = delivery.attempts + 1
        outcome = {"attempts": attempts, "response_status": status, "error": error}
        if error == "":
            outcome.update(status=WebhookDelivery.Status.DELIVERED, delivered_at=now)
            result.delivered += 1
        elif attempts >= max_attempts:
            outcome["status"] = WebhookDelivery.Status.FAILED
            result.failed += 1
            logger.warning(
                "Webhook delivery gave up after %d attempts",
                attempts,
                extra={"delivery_id": delivery.pk},
            )
        else:
            outcome["next_attempt_at"] = now + backoff(attempts)
            result.retrying += 1
            logger.warning(
                "Webhook delivery failed; retrying",
                extra={"delivery_id": delivery.pk, "status": status},
            )
        outcome["error"] = error[:255]
        _record(delivery, outcome)
    if deliveries:
        logger.info("Webhook batch: %s", result.as_dict())
    return result


def _record(delivery: WebhookDelivery, outcome: dict) -> None:
    """Write one outcome unless another worker has claimed the row since."""
    written = WebhookDelivery.objects.filter(
        pk=delivery.pk,
        status=WebhookDelivery.Status.PENDING,
        next_attempt_at=delivery.next_attempt_at,
    ).update(**outcome)
    if not written:
        logger.warning(
            "Webhook delivery was claimed again before its outcome was written",
            extra={"delivery_id": delivery.pk},
        )


def backoff(attempts: int) -> dt.timedelta:
    """Return the wait before the next try: 30 s doubling, at most 6 hours."""
    seconds = conf.get("NURTURE_WEBHOOK_BACKOFF_SECONDS") * 2 ** (attempts - 1)
    return dt.timedelta(seconds=min(seconds, 6 * 3600))


def _claim(*, now: dt.datetime, batch_size: int) -> list[WebhookDelivery]:
    """Lease a batch of due rows to this worker and return them in send order.

    Rows are sent one after another, each request taking up to about three
    timeouts (connect, send, answer), so the n-th row's lease runs n times
    that from ``now``: no other worker takes a row this one may still send.
    A crashed worker's rows wait out their leases and are retried.
    """
    per_row = dt.timedelta(seconds=conf.get("NURTURE_WEBHOOK_TIMEOUT_SECONDS") * 3)
    due = WebhookDelivery.objects.filter(
        status=WebhookDelivery.Status.PENDING, next_attempt_at__lte=now
    ).order_by("next_attempt_at", "pk")
    with transaction.atomic():
        if connection.features.has_select_for_update_skip_locked:
            ids = list(
                due.select_for_update(skip_locked=True).values_list("pk", flat=True)[
                    :batch_size
                ]
            )
            leases = {pk: now + per_row * n for n, pk in enumerate(ids, start=1)}
            if ids:
                WebhookDelivery.objects.filter(pk__in=ids).update(
                    next_attempt_at=Case(
                        *(
                            When(pk=pk, then=Value(lease))
                            for pk, lease in leases.items()
                        ),
                        output_field=DateTimeField(),
                    )
                )
        else:
            # SQLite has one writer at a time; compare-and-set each row.
            ids = []
            for pk, when in due.values_list("pk", "next_attempt_at")[:batch_size]:
                lease = now + per_row * (len(ids) + 1)
                if WebhookDelivery.objects.filter(pk=pk, next_attempt_at=when).update(
                    next_attempt_at=lease
                ):
                    ids.append(pk)
    order = {pk: n for n, pk in enumerate(ids)}
    claimed = WebhookDelivery.objects.filter(pk__in=ids).select_related("subscription")
    return sorted(claimed, key=lambda delivery: order[delivery.pk])


def _post(delivery: WebhookDelivery, *, now: dt.datetime) -> tuple[int | None, str]:
    """Send one delivery; return (HTTP status, error text or "")."""
    subscription = delivery.subscription
    if urllib.parse.urlsplit(subscription.url).scheme not in ("http", "https"):
        return None, "only http and https addresses are allowed"

    body = json.dumps(
        {
            "id": delivery.pk,
            "event": delivery.event,
            "created_at": delivery.created_at.isoformat(),
            "data": delivery.payload,
        },
        sort_keys=True,
    ).encode()
    request = urllib.request.Request(
        subscription.url,
        data=body,
        method="POST",
        headers={
            "Content-Type": "application/json",
            "User-Agent": "nurture-webhooks/1",
            EVENT_HEADER: delivery.event,
            IDEMPOTENCY_HEADER: str(delivery.pk),
            SIGNATURE_HEADER: sign(subscription.secret, body),
        },
    )
    timeout = conf.get("NURTURE_WEBHOOK_TIMEOUT_SECONDS")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, ""
    except urllib.error.HTTPError as error:
        return error.code, f"HTTP {error.code}"
    except (urllib.error.URLError, OSError) as error:
        return None, f"{type(error).__name__}: {error}"
