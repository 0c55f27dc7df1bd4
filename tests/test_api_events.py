"""/api/events/: single and bulk intake, per-item errors, idempotency."""

import datetime as dt

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from crm.models import EngagementEvent
from nurture.models import Enrollment
from tests.api_support import make_integration, make_manager, make_rep, token_client
from tests.factories import ContactFactory, EngagementEventFactory, EnrollmentFactory

pytestmark = pytest.mark.django_db

URL = "/api/events/"
WHEN = "2025-03-03T09:30:00+01:00"


@pytest.fixture
def api():
    return token_client(make_manager())


def event(contact, type="page_view", **extra):
    return {"contact": contact.pk, "type": type, "occurred_at": WHEN, **extra}


def test_posting_needs_a_token():
    """Without credentials an event is refused with 401 and nothing is stored."""
    contact = ContactFactory()

    response = APIClient().post(URL, event(contact), format="json")

    assert response.status_code == 401
    assert not EngagementEvent.objects.exists()


def test_one_event_is_stored_unscored_at_its_moment(api):
    """A single event answers 201 and is stored with its zone-aware time."""
    contact = ContactFactory()

    response = api.post(
        URL,
        event(contact, source="web", properties={"path": "/pricing"}),
        format="json",
    )

    assert response.status_code == 201, response.json()
    assert response.json()["created"] == 1
    stored = EngagementEvent.objects.get(pk=response.json()["ids"][0])
    assert stored.contact == contact
    assert stored.occurred_at == dt.datetime(2025, 3, 3, 8, 30, tzinfo=dt.UTC)
    assert stored.properties == {"path": "/pricing"}
    assert stored.scored_at is None


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"occurred_at": "2025-03-03T09:30:00"}, "occurred_at"),
        ({"occurred_at": "yesterday"}, "occurred_at"),
        ({"type": "tweet"}, "type"),
        ({"properties": ["not", "an", "object"]}, "properties"),
        ({"contact": None}, "contact"),
    ],
)
def test_an_invalid_single_event_is_a_400_naming_the_field(api, change, field):
    """A naive time, unknown type, bad properties or no contact name the field."""
    contact = ContactFactory()
    body = {**event(contact), **change}
    body = {key: value for key, value in body.items() if value is not None}

    response = api.post(URL, body, format="json")

    assert response.status_code == 400
    assert field in response.json()
    assert not EngagementEvent.objects.exists()


def test_an_unknown_contact_is_a_400_naming_the_lookup(api):
    """An email no contact has is refused on contact_email."""
    response = api.post(
        URL,
        {
            "contact_email": "nobody@example.com",
            "type": "page_view",
            "occurred_at": WHEN,
        },
        format="json",
    )

    assert response.status_code == 400
    assert "contact_email" in response.json()


def test_contacts_can_be_named_by_email_or_external_id(api):
    """contact_email (any case) and contact_external_id find the contact."""
    contact = ContactFactory(email="ada@example.com", external_id="lead-7")
    base = {"type": "page_view", "occurred_at": WHEN}

    response = api.post(
        URL,
        [
            {**base, "contact_email": "ADA@example.com"},
            {**base, "contact_external_id": "lead-7"},
        ],
        format="json",
    )

    assert response.json()["created"] == 2, response.json()
    assert EngagementEvent.objects.filter(contact=contact).count() == 2


def test_a_bulk_post_keeps_good_items_and_reports_bad_ones(api):
    """Bad items are listed by index and field; every good item is stored."""
    contact = ContactFactory()
    items = [
        event(contact, external_id="a"),
        event(contact, type="tweet"),
        event(contact, external_id="b"),
        {"contact": 999999, "type": "page_view", "occurred_at": WHEN},
        event(contact, occurred_at="2025-03-03 09:30"),
    ]

    response = api.post(URL, items, format="json")

    assert response.status_code == 200
    body = response.json()
    assert body["created"] == 2
    assert [(e["index"], e["field"]) for e in body["errors"]] == [
        (1, "type"),
        (3, "contact"),
        (4, "occurred_at"),
    ]
    assert all(e["error"] for e in body["errors"])
    assert set(EngagementEvent.objects.values_list("external_id", flat=True)) == {
        "a",
        "b",
    }


def test_reposting_an_external_id_does_not_duplicate(api):
    """A resent event is reported as a duplicate and stored only once."""
    contact = ContactFactory()
    first = api.post(URL, event(contact, external_id="esp-1"), format="json")

    single = api.post(URL, event(contact, external_id="esp-1"), format="json")
    bulk = api.post(
        URL,
        [event(contact, external_id="esp-1"), event(contact, external_id="esp-2")],
        format="json",
    )

    assert single.status_code == 200
    stored_id = first.json()["ids"][0]
    assert single.json() == {
        "created": 0,
        "duplicates": 1,
        "ids": [stored_id],
        "errors": [],
    }
    assert (bulk.json()["created"], bulk.json()["duplicates"]) == (1, 1)
    assert EngagementEvent.objects.count() == 2


def test_the_same_external_id_from_two_sources_is_two_events(api):
    """External ids are the sender's: another source may reuse the number."""
    contact = ContactFactory()
    api.post(URL, event(contact, source="website", external_id="100"), format="json")

    response = api.post(
        URL,
        event(contact, type="unsubscribe", source="esp", external_id="100"),
        format="json",
    )

    assert response.status_code == 201
    contact.refresh_from_db()
    assert contact.unsubscribed_at is not None
    assert EngagementEvent.objects.filter(external_id="100").count() == 2


def test_an_external_id_reused_for_another_contact_is_an_error(api):
    """A key that names someone else's event is refused, never a silent drop."""
    ann, bob = ContactFactory(), ContactFactory()
    api.post(URL, event(ann, source="esp", external_id="7"), format="json")

    single = api.post(
        URL,
        event(bob, type="unsubscribe", source="esp", external_id="7"),
        format="json",
    )
    bulk = api.post(
        URL,
        [
            event(bob, source="esp", external_id="8"),
            event(bob, type="unsubscribe", source="esp", external_id="7"),
        ],
        format="json",
    )

    assert single.status_code == 400
    assert "external_id" in single.json()
    body = bulk.json()
    assert body["created"] == 1
    assert [e["index"] for e in body["errors"]] == [1]
    assert body["errors"][0]["field"] == "external_id"
    assert body["ids"][1] is None and body["ids"][0] is not None


def test_bulk_ids_follow_the_order_items_were_sent(api):
    """Each item's id sits at its own index, with null for a failed item."""
    contact = ContactFactory()
    items = [event(contact, external_id=f"k{n}") for n in range(5)]
    items.insert(2, event(contact, type="no-such-type"))

    body = api.post(URL, items, format="json").json()

    stored = dict(EngagementEvent.objects.values_list("external_id", "pk"))
    assert body["ids"] == [
        stored["k0"],
        stored["k1"],
        None,
        stored["k2"],
        stored["k3"],
        stored["k4"],
    ]


def test_an_unsubscribe_event_suppresses_and_exits(api):
    """Posting an unsubscribe stamps the contact and ends their enrollments."""
    contact = ContactFactory()
    enrollment = EnrollmentFactory(contact=contact)

    api.post(URL, event(contact, type="unsubscribe"), format="json")

    contact.refresh_from_db()
    enrollment.refresh_from_db()
    assert contact.unsubscribed_at is not None
    assert enrollment.state == Enrollment.State.EXITED
    assert enrollment.exit_reason == Enrollment.ExitReason.UNSUBSCRIBED


def test_a_rep_cannot_post_events_for_another_reps_contact():
    """Someone else's contact is unknown to a rep, so the item is refused."""
    rep = make_rep()
    theirs = ContactFactory(owner=make_rep())

    response = token_client(rep).post(URL, event(theirs), format="json")

    assert response.status_code == 400
    assert "contact" in response.json()


def test_an_integration_posts_events_for_anyones_contacts_and_reads_them():
    """A system in the Integrations group names contacts whoever owns them."""
    integration = token_client(make_integration())
    owned, imported = ContactFactory(owner=make_rep()), ContactFactory()

    response = integration.post(
        URL,
        [event(owned), {"contact_email": imported.email, "type": "page_view",
                        "occurred_at": WHEN}],
        format="json",
    )  # fmt: skip

    assert response.status_code == 200, response.json()
    assert response.json()["created"] == 2, response.json()
    assert EngagementEvent.objects.filter(contact=owned).count() == 1
    listed = integration.get("/api/contacts/").json()["results"]
    assert {row["id"] for row in listed} == {owned.pk, imported.pk}


def test_too_many_events_in_one_request_is_a_400(api):
    """More than 1,000 items are refused whole, before anything is stored."""
    contact = ContactFactory()

    response = api.post(URL, [event(contact)] * 1001, format="json")

    assert response.status_code == 400
    assert not EngagementEvent.objects.exists()


def test_bulk_intake_costs_the_same_queries_at_any_size(api):
    """Contacts are looked up once per request, not once per item."""

    def post(size):
        contacts = ContactFactory.create_batch(size)
        items = [
            {
                "contact_email": contact.email,
                "type": "email_open",
                "occurred_at": WHEN,
                "external_id": f"{size}-{n}",
            }
            for n, contact in enumerate(contacts)
        ]
        with CaptureQueriesContext(connection) as queries:
            response = api.post(URL, items, format="json")
        assert response.json()["created"] == size
        return len(queries)

    assert post(2) == post(40)


def test_the_list_filters_by_contact_type_and_time(api):
    """contact, type and occurred_after/before select the matching events."""
    contact = ContactFactory()
    start = dt.datetime(2025, 3, 1, tzinfo=dt.UTC)
    wanted = EngagementEventFactory(
        contact=contact, type="email_click", occurred_at=start
    )
    EngagementEventFactory(
        contact=contact, type="email_click", occurred_at=start - dt.timedelta(days=2)
    )
    EngagementEventFactory(contact=contact, type="page_view", occurred_at=start)
    EngagementEventFactory(type="email_click", occurred_at=start)

    response = api.get(
        URL,
        {
            "contact": contact.pk,
            "type": "email_click",
            "occurred_after": "2025-02-28T00:00:00Z",
            "occurred_before": "2025-03-02T00:00:00Z",
        },
    )

    assert [row["id"] for row in response.json()["results"]] == [wanted.pk]


def test_a_rep_lists_only_events_of_their_contacts():
    """A rep's event list holds only events of contacts they own."""
    rep = make_rep()
    mine = EngagementEventFactory(contact=ContactFactory(owner=rep))
    EngagementEventFactory(contact=ContactFactory(owner=make_rep()))

    response = token_client(rep).get(URL)

    assert [row["id"] for row in response.json()["results"]] == [mine.pk]


@pytest.mark.parametrize("size", [3, 30])
def test_the_list_costs_the_same_queries_at_any_size(
    api, size, django_assert_num_queries
):
    """Token, manager check and one page query; a cursor page never counts."""
    EngagementEventFactory.create_batch(size)

    # Two of these load the user's model permissions.
    with django_assert_num_queries(5):
        response = api.get(URL)

    assert len(response.json()["results"]) == size
