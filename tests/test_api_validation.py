"""Bad API input is a 400 naming the field, never a server error."""

import datetime as dt
import json

import pytest
from django.utils import timezone

from crm.models import Contact, EngagementEvent
from tests.api_support import make_manager, token_client
from tests.factories import AccountFactory, CadenceFactory, ContactFactory

pytestmark = pytest.mark.django_db

HUGE = 10**23
JUST_OVER = 2**63


@pytest.fixture
def api():
    return token_client(make_manager())


def event(contact_id, **extra):
    return {
        "contact": contact_id,
        "type": "page_view",
        "occurred_at": "2025-03-03T10:00:00Z",
        **extra,
    }


@pytest.mark.parametrize("number", [HUGE, JUST_OVER])
def test_an_impossible_contact_id_in_an_event_is_a_400(api, number):
    """An id beyond any key is refused by name, and good items still land."""
    contact = ContactFactory()

    single = api.post("/api/events/", event(number), format="json")
    bulk = api.post("/api/events/", [event(contact.pk), event(number)], format="json")

    assert single.status_code == 400
    assert "contact" in single.json()
    assert bulk.status_code == 200
    assert bulk.json()["created"] == 1
    assert bulk.json()["errors"][0]["index"] == 1
    assert bulk.json()["errors"][0]["field"] == "contact"


@pytest.mark.parametrize(
    "url",
    [
        "/api/contacts/?owner={n}",
        "/api/contacts/?account={n}",
        "/api/accounts/?owner={n}",
        "/api/events/?contact={n}",
        "/api/enrollments/?contact={n}",
        "/api/enrollments/?cadence={n}",
        "/api/handoffs/?assignee={n}",
    ],
)
def test_an_impossible_id_in_a_filter_is_a_400_naming_it(api, url):
    response = api.get(url.format(n=HUGE))

    assert response.status_code == 400
    name = url.split("?")[1].split("=")[0]
    assert name in response.json()


@pytest.mark.parametrize(
    "payload, field",
    [
        ({"contact": HUGE, "cadence": 1}, "contact"),
        ({"contact": 1, "cadence": JUST_OVER}, "cadence"),
    ],
)
def test_an_impossible_id_when_enrolling_is_a_400(api, payload, field):
    CadenceFactory()

    response = api.post("/api/enrollments/", payload, format="json")

    assert response.status_code == 400
    assert field in response.json()


def test_an_impossible_owner_on_a_contact_is_a_400(api):
    response = api.post(
        "/api/contacts/", {"email": "a@example.com", "owner": HUGE}, format="json"
    )

    assert response.status_code == 400
    assert "owner" in response.json()


def test_a_nul_character_in_json_is_a_400_and_good_items_land(api):
    """PostgreSQL cannot store NUL in JSON; the item is refused, not the request."""
    contact = ContactFactory()

    created = api.post(
        "/api/contacts/",
        {"email": "x@example.org", "attributes": {"k": "a\x00b"}},
        format="json",
    )
    bulk = api.post(
        "/api/events/",
        [
            event(contact.pk, external_id="good-1"),
            event(contact.pk, properties={"k": "a\x00b"}),
        ],
        format="json",
    )

    assert created.status_code == 400
    assert "attributes" in created.json()
    assert bulk.json()["created"] == 1
    assert bulk.json()["errors"][0]["field"] == "properties"
    assert EngagementEvent.objects.filter(external_id="good-1").exists()


def _nested(depth: int) -> dict:
    value: dict = {"leaf": 1}
    for _ in range(depth):
        value = {"a": value}
    return value


@pytest.mark.parametrize(
    "properties",
    [{"k": "\ud800"}, {"\udfff": 1}, {"k": ["ok", "x\udc00"]}, _nested(40)],
    ids=["lone surrogate", "surrogate key", "surrogate in a list", "40 deep"],
)
def test_json_a_database_cannot_store_is_refused_per_item(api, properties):
    """Unpaired surrogates (PostgreSQL refuses them) and deep nesting are
    refused for their item, naming the field; the good item lands."""
    contact = ContactFactory()
    body = json.dumps(
        [
            event(contact.pk, external_id="good-1"),
            event(contact.pk, properties=properties),
        ]
    )

    response = api.post("/api/events/", body, content_type="application/json")

    assert response.status_code == 200
    assert response.json()["created"] == 1
    assert [e["field"] for e in response.json()["errors"]] == ["properties"]
    assert list(EngagementEvent.objects.values_list("external_id", flat=True)) == [
        "good-1"
    ]


def test_a_body_nested_past_the_parser_is_a_400_not_a_500(api):
    body = '{"a": ' * 5000 + "1" + "}" * 5000

    response = api.post("/api/events/", body, content_type="application/json")

    assert response.status_code == 400
    assert "nested too deeply" in response.json()["detail"]


def test_an_unknown_time_zone_is_a_400_naming_it(api):
    response = api.post(
        "/api/contacts/",
        {"email": "tz@example.com", "time_zone": "Mars/Olympus"},
        format="json",
    )

    assert response.status_code == 400
    assert "time_zone" in response.json()
    assert not Contact.objects.filter(email="tz@example.com").exists()


@pytest.mark.parametrize("attributes", [["a", "b"], "text", 3])
def test_contact_attributes_must_be_an_object(api, attributes):
    response = api.post(
        "/api/contacts/",
        {"email": "attrs@example.com", "attributes": attributes},
        format="json",
    )

    assert response.status_code == 400
    assert "attributes" in response.json()


def test_a_contact_needs_something_that_says_who_it_is(api):
    response = api.post("/api/contacts/", {}, format="json")

    assert response.status_code == 400
    assert "email" in response.json()
    assert Contact.objects.count() == 0


@pytest.mark.parametrize(
    "change, field",
    [
        ({"domain": "not a domain!!"}, "domain"),
        ({"technographics": {"crm": "x"}}, "technographics"),
        ({"year_established": 99999}, "year_established"),
    ],
)
def test_bad_account_values_are_a_400_naming_the_field(api, change, field):
    response = api.post(
        "/api/accounts/", {"name": "Acme Widgets", **change}, format="json"
    )

    assert response.status_code == 400
    assert field in response.json()


def test_a_good_account_domain_is_stored_bare(api):
    AccountFactory(name="Other")

    response = api.post(
        "/api/accounts/",
        {"name": "Acme", "domain": "https://www.Acme-Widgets.co.uk/about"},
        format="json",
    )

    assert response.status_code == 201
    assert response.json()["domain"] == "acme-widgets.co.uk"


def test_an_event_from_the_future_is_a_400(api):
    contact = ContactFactory()
    tomorrow_and_more = timezone.now() + dt.timedelta(days=2)

    response = api.post(
        "/api/events/",
        event(contact.pk, occurred_at=tomorrow_and_more.isoformat()),
        format="json",
    )

    assert response.status_code == 400
    assert "occurred_at" in response.json()


def test_the_api_front_page_lists_its_collections(api):
    """/api/ answers with the address of every collection, not a 404."""
    response = api.get("/api/")

    assert response.status_code == 200
    body = response.json()
    assert set(body) == {
        "contacts",
        "accounts",
        "events",
        "cadences",
        "enrollments",
        "handoffs",
    }
    assert body["contacts"].endswith("/api/contacts/")


def test_the_api_front_page_needs_a_token():
    from rest_framework.test import APIClient

    assert APIClient().get("/api/").status_code == 401
