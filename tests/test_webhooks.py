"""Webhook outbox: queued with the change, signed, delivered, retried, given up."""

import datetime as dt
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from crm.models import LifecycleStage
from nurture.models import WebhookDelivery, WebhookSubscription
from nurture.services.handoffs import accept_handoff, hand_off
from nurture.services.webhooks import (
    IDEMPOTENCY_HEADER,
    SIGNATURE_HEADER,
    deliver_webhooks,
    sign,
)
from tests.factories import ContactFactory, RepFactory, RoutingRuleFactory

pytestmark = pytest.mark.django_db

NOW = dt.datetime(2025, 3, 3, 10, 0, tzinfo=dt.UTC)
SECRET = "s3cret-for-tests"


class Receiver:
    """A local HTTP endpoint answering with queued statuses, then 200."""

    def __init__(self):
        self.requests = []
        self.statuses = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                receiver.handle(self)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hooks"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def handle(self, handler):
        body = handler.rfile.read(int(handler.headers["Content-Length"]))
        self.requests.append((dict(handler.headers), body))
        status = self.statuses.pop(0) if self.statuses else 200
        handler.send_response(status)
        handler.end_headers()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    server = Receiver()
    yield server
    server.close()


@pytest.fixture
def rep():
    RoutingRuleFactory(region="Central")
    return RepFactory(region="Central")


def _subscribe(url, events=()):
    return WebhookSubscription.objects.create(
        name="CRM sync", url=url, events=list(events), secret=SECRET
    )


def test_handoff_is_delivered_signed_with_an_idempotency_key(receiver, rep):
    """The receiver gets the event once, signed with the shared secret."""
    _subscribe(receiver.url, ["handoff.created"])
    handoff = hand_off(ContactFactory(), now=NOW)
    (delivery,) = WebhookDelivery.objects.all()

    result = deliver_webhooks(now=NOW)

    assert (result.claimed, result.delivered) == (1, 1)
    ((headers, body),) = receiver.requests
    assert headers[SIGNATURE_HEADER] == sign(SECRET, body)
    assert headers[IDEMPOTENCY_HEADER] == str(delivery.pk)
    message = json.loads(body)
    assert message["event"] == "handoff.created"
    assert message["data"]["handoff_id"] == handoff.pk
    assert message["data"]["assignee_id"] == rep.user_id
    assert "@" not in body.decode()  # no email addresses leave the system
    delivery.refresh_from_db()
    assert delivery.status == WebhookDelivery.Status.DELIVERED
    assert delivery.delivered_at == NOW


def test_a_500_is_retried_after_the_backoff(receiver, rep, settings):
    """A failing endpoint is retried after 30 s and then succeeds."""
    settings.NURTURE_WEBHOOK_BACKOFF_SECONDS = 30
    _subscribe(receiver.url)
    hand_off(ContactFactory(), now=NOW)
    receiver.statuses = [500]

    # when the first attempt gets a 500
    first = deliver_webhooks(now=NOW)
    delivery = WebhookDelivery.objects.get()

    # then it waits for the backoff before the second attempt succeeds
    assert first.retrying == 1
    assert (delivery.attempts, delivery.response_status) == (1, 500)
    assert delivery.next_attempt_at == NOW + dt.timedelta(seconds=30)
    assert deliver_webhooks(now=NOW + dt.timedelta(seconds=29)).claimed == 0
    assert deliver_webhooks(now=NOW + dt.timedelta(seconds=30)).delivered == 1
    assert len(receiver.requests) == 2
    first_key = receiver.requests[0][0][IDEMPOTENCY_HEADER]
    assert receiver.requests[1][0][IDEMPOTENCY_HEADER] == first_key


def test_delivery_fails_after_the_last_attempt(receiver, rep, settings):
    """After NURTURE_WEBHOOK_MAX_ATTEMPTS failures the delivery is failed."""
    settings.NURTURE_WEBHOOK_MAX_ATTEMPTS = 2
    _subscribe(receiver.url)
    hand_off(ContactFactory(), now=NOW)
    receiver.statuses = [503, 503, 503]

    deliver_webhooks(now=NOW)
    last = deliver_webhooks(now=NOW + dt.timedelta(hours=1))

    assert last.failed == 1
    delivery = WebhookDelivery.objects.get()
    assert (delivery.status, delivery.attempts) == (WebhookDelivery.Status.FAILED, 2)
    assert deliver_webhooks(now=NOW + dt.timedelta(days=1)).claimed == 0


def test_subscriptions_get_only_their_events(rep):
    """A subscription to accepted handoffs is not sent the creation."""
    wants_all = _subscribe("http://127.0.0.1:9/all")
    wants_accepted = _subscribe("http://127.0.0.1:9/acc", ["handoff.accepted"])
    handoff = hand_off(ContactFactory(lifecycle_stage=LifecycleStage.MQL), now=NOW)

    accept_handoff(handoff, now=NOW + dt.timedelta(hours=1))

    assert sorted(
        WebhookDelivery.objects.values_list("subscription__name", "event")
    ) == sorted(
        [
            (wants_all.name, "handoff.created"),
            (wants_all.name, "handoff.accepted"),
            (wants_accepted.name, "handoff.accepted"),
        ]
    )


def test_only_http_addresses_are_called(rep):
    """A file: address is refused, never opened."""
    _subscribe("file:///etc/passwd")
    hand_off(ContactFactory(), now=NOW)

    result = deliver_webhooks(now=NOW)

    assert result.retrying == 1
    assert "only http" in WebhookDelivery.objects.get().error


def test_a_rolled_back_change_queues_nothing(rep):
    """Deliveries commit with the handoff: a failed handoff leaves no row."""
    from django.db import transaction

    _subscribe("http://127.0.0.1:9/x")
    with pytest.raises(RuntimeError), transaction.atomic():
        hand_off(ContactFactory(), now=NOW)
        raise RuntimeError("boom")

    assert not WebhookDelivery.objects.exists()


class SlowReceiver(Receiver):
    """A threaded local endpoint that takes a while over every request."""

    def __init__(self, delay: float):
        self.delay = delay
        self.arrived = threading.Semaphore(0)
        super().__init__()

    def handle(self, handler):
        body = handler.rfile.read(int(handler.headers["Content-Length"]))
        self.requests.append((dict(handler.headers), body))
        self.arrived.release()
        time.sleep(self.delay)  # the receiver is slow; the test never sleeps
        handler.send_response(200)
        handler.end_headers()


@pytest.mark.django_db(transaction=True)
def test_a_slow_receiver_gets_each_delivery_once_from_two_workers(rep, settings):
    """A second worker starting past the first one's old lease sends only rows
    nobody has claimed: each delivery is POSTed exactly once and recorded."""
    from collections import Counter

    from django.db import connections

    settings.NURTURE_WEBHOOK_TIMEOUT_SECONDS = 1
    receiver = SlowReceiver(delay=0.2)
    try:
        subscription = _subscribe(receiver.url)
        WebhookDelivery.objects.bulk_create(
            WebhookDelivery(
                subscription=subscription,
                event="handoff.created",
                payload={"n": n},
                next_attempt_at=NOW,
                created_at=NOW,
            )
            for n in range(14)
        )
        results = {}

        def work(name, now):
            try:
                results[name] = deliver_webhooks(now=now, batch_size=10)
            finally:
                connections.close_all()

        # given a first worker that claims ten rows and sends them slowly
        first = threading.Thread(target=work, args=("first", NOW))
        first.start()
        # when a second worker runs 3.5 s later, mid-batch and past the
        # 3 s that used to be the whole batch's lease
        for _ in range(3):
            assert receiver.arrived.acquire(timeout=30)
        second = threading.Thread(
            target=work, args=("second", NOW + dt.timedelta(seconds=3.5))
        )
        second.start()
        first.join()
        second.join()
    finally:
        receiver.close()

    # then every delivery went out once and is recorded as delivered
    keys = Counter(headers[IDEMPOTENCY_HEADER] for headers, _ in receiver.requests)
    assert len(keys) == 14
    assert set(keys.values()) == {1}
    assert (results["first"].delivered, results["second"].delivered) == (10, 4)
    assert set(WebhookDelivery.objects.values_list("status", flat=True)) == {
        WebhookDelivery.Status.DELIVERED
    }
