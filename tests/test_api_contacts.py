"""/api/contacts/: token auth, filters, validation, stages and visibility."""

import pytest
from rest_framework.test import APIClient

from crm.models import Contact, StageChange
from tests.api_support import make_manager, make_rep, token_client
from tests.factories import AccountFactory, ContactFactory

pytestmark = pytest.mark.django_db

URL = "/api/contacts/"


def detail(contact):
    return f"{URL}{contact.pk}/"


def ids(response):
    return {row["id"] for row in response.json()["results"]}


@pytest.fixture
def manager():
    return make_manager()


@pytest.fixture
def api(manager):
    return token_client(manager)


def test_the_api_needs_a_token():
    """Without credentials the API answers 401; with a token it answers 200."""
    user = make_rep()

    assert APIClient().get(URL).status_code == 401
    assert token_client(user).get(URL).status_code == 200


def test_filter_by_several_stages(api):
    """lifecycle_stage may repeat; contacts in any of the stages are listed."""
    mql = ContactFactory(lifecycle_stage="mql")
    sql = ContactFactory(lifecycle_stage="sql")
    ContactFactory(lifecycle_stage="lead")

    response = api.get(URL, {"lifecycle_stage": ["mql", "sql"]})

    assert ids(response) == {mql.pk, sql.pk}


def test_filter_by_owner_and_source(api):
    """owner and lead_source narrow the list to the matching contacts."""
    rep = make_rep()
    wanted = ContactFactory(owner=rep, lead_source="Google")
    ContactFactory(owner=rep, lead_source="Olark Chat")
    ContactFactory(lead_source="Google")

    response = api.get(URL, {"owner": rep.pk, "lead_source": "Google"})

    assert ids(response) == {wanted.pk}


def test_filter_by_score_range(api):
    """total_score_min and total_score_max bound the list, ends included."""
    ContactFactory(total_score=10)
    low_edge = ContactFactory(total_score=40)
    high_edge = ContactFactory(total_score=70)
    ContactFactory(total_score=71)

    response = api.get(URL, {"total_score_min": 40, "total_score_max": 70})

    assert ids(response) == {low_edge.pk, high_edge.pk}


def test_an_unknown_stage_in_a_filter_is_a_400(api):
    """A filter value outside the choices is refused, naming the filter."""
    response = api.get(URL, {"lifecycle_stage": "prospect"})

    assert response.status_code == 400
    assert "lifecycle_stage" in response.json()


def test_lists_are_paginated(api):
    """page_size caps a page; count and next let a client walk the rest."""
    ContactFactory.create_batch(5)

    first = api.get(URL, {"page_size": 2}).json()
    last = api.get(URL, {"page_size": 2, "page": 3}).json()

    assert first["count"] == 5
    assert len(first["results"]) == 2
    assert first["next"] is not None
    assert len(last["results"]) == 1
    assert last["next"] is None


def test_create_folds_the_email(api):
    """A new contact's address is stored trimmed and lower-case."""
    response = api.post(
        URL, {"email": " Ada@Example.COM ", "first_name": "Ada"}, format="json"
    )

    assert response.status_code == 201, response.json()
    assert response.json()["email"] == "ada@example.com"
    assert Contact.objects.get(pk=response.json()["id"]).email == "ada@example.com"


def test_a_duplicate_email_is_a_400_naming_email(api):
    """An address already taken, whatever its case, is refused on email."""
    ContactFactory(email="ada@example.com")

    response = api.post(URL, {"email": "ADA@example.com"}, format="json")

    assert response.status_code == 400
    assert list(response.json()) == ["email"]


def test_an_invalid_email_is_a_400_naming_email(api):
    """An address without a domain is refused on email."""
    response = api.post(URL, {"email": "ada@"}, format="json")

    assert response.status_code == 400
    assert "email" in response.json()


def test_an_unknown_stage_is_a_400_naming_the_field(api):
    """A lifecycle stage outside the lifecycle is refused on lifecycle_stage."""
    response = api.post(
        URL, {"email": "x@example.com", "lifecycle_stage": "hot"}, format="json"
    )

    assert response.status_code == 400
    assert "lifecycle_stage" in response.json()


def test_scores_and_held_out_outcome_cannot_be_written(api):
    """Scores are read-only and the held-out outcome is never exposed."""
    contact = ContactFactory(total_score=5)

    response = api.patch(
        detail(contact),
        {"total_score": 99, "fit_score": 99, "known_converted": True},
        format="json",
    )

    assert response.status_code == 200
    contact.refresh_from_db()
    assert contact.total_score == 5
    assert contact.fit_score == 0
    assert contact.known_converted is None
    assert "known_converted" not in response.json()
    assert response.json()["total_score"] == 5


def test_a_stage_change_is_recorded(api, manager):
    """A stage change through the API is recorded with its actor."""
    contact = ContactFactory(lifecycle_stage="lead")

    response = api.patch(detail(contact), {"lifecycle_stage": "mql"}, format="json")

    assert response.status_code == 200, response.json()
    assert response.json()["lifecycle_stage"] == "mql"
    assert response.json()["mql_at"] is not None
    change = StageChange.objects.get(contact=contact)
    assert (change.from_stage, change.to_stage) == ("lead", "mql")
    assert change.actor == manager


def test_an_illegal_stage_change_is_a_400_and_changes_nothing(api):
    """A move the lifecycle forbids is refused and the other edits roll back."""
    contact = ContactFactory(lifecycle_stage="lead", title="Engineer")

    response = api.patch(
        detail(contact),
        {"lifecycle_stage": "customer", "title": "CTO"},
        format="json",
    )

    assert response.status_code == 400
    assert "lifecycle_stage" in response.json()
    contact.refresh_from_db()
    assert (contact.lifecycle_stage, contact.title) == ("lead", "Engineer")
    assert not StageChange.objects.exists()


def test_put_replaces_the_editable_fields(api):
    """PUT keeps the email unique check from tripping over the contact itself."""
    contact = ContactFactory(email="ada@example.com", city="Leeds")

    response = api.put(
        detail(contact),
        {"email": "ada@example.com", "city": "York", "first_name": "Ada"},
        format="json",
    )

    assert response.status_code == 200, response.json()
    contact.refresh_from_db()
    assert (contact.city, contact.first_name) == ("York", "Ada")


def test_a_rep_sees_only_their_own_contacts():
    """A rep lists their own contacts; another rep's contact is a 404."""
    rep, other = make_rep(), make_rep()
    mine = ContactFactory(owner=rep)
    theirs = ContactFactory(owner=other)
    api = token_client(rep)

    assert ids(api.get(URL)) == {mine.pk}
    assert api.get(detail(theirs)).status_code == 404
    assert api.patch(detail(theirs), {"city": "X"}, format="json").status_code == 404


def test_a_manager_sees_every_contact(api):
    """A manager lists contacts of every owner."""
    a = ContactFactory(owner=make_rep())
    b = ContactFactory()

    assert ids(api.get(URL)) == {a.pk, b.pk}


def test_a_rep_creates_contacts_for_themselves_only():
    """A rep's new contact is theirs; giving it to someone else is refused."""
    rep, other = make_rep(), make_rep()
    api = token_client(rep)

    created = api.post(URL, {"email": "new@example.com"}, format="json")
    refused = api.post(
        URL, {"email": "two@example.com", "owner": other.pk}, format="json"
    )

    assert created.status_code == 201
    assert created.json()["owner"] == rep.pk
    assert refused.status_code == 400
    assert "owner" in refused.json()


@pytest.mark.parametrize("size", [3, 30])
def test_the_list_costs_the_same_queries_at_any_size(
    api, size, django_assert_num_queries
):
    """Token, manager check, default model, count and one page query, however
    many rows."""
    account = AccountFactory()
    for _ in range(size):
        ContactFactory(account=account, owner=make_rep())

    # Two of these load the user's model permissions; the default scoring
    # model says how totals read now (decayed, or learned and not decaying).
    with django_assert_num_queries(7):
        response = api.get(URL)

    assert len(response.json()["results"]) == size
    assert response.json()["results"][0]["account_name"] == account.name


def test_a_rep_cannot_lift_a_suppression_but_a_manager_can(manager):
    """After a complaint set do-not-email, only a manager may clear it."""
    rep = make_rep()
    contact = ContactFactory(owner=rep, do_not_email=True)

    by_rep = token_client(rep).patch(
        detail(contact), {"do_not_email": False}, format="json"
    )
    contact.refresh_from_db()
    assert by_rep.status_code == 400
    assert "do_not_email" in by_rep.json()
    assert contact.do_not_email is True

    by_manager = token_client(manager).patch(
        detail(contact), {"do_not_email": False}, format="json"
    )
    contact.refresh_from_db()
    assert by_manager.status_code == 200
    assert contact.do_not_email is False


def test_a_rep_may_set_a_suppression():
    rep = make_rep()
    contact = ContactFactory(owner=rep)

    response = token_client(rep).patch(
        detail(contact), {"do_not_call": True}, format="json"
    )

    assert response.status_code == 200
    contact.refresh_from_db()
    assert contact.do_not_call is True


@pytest.mark.parametrize("stage", ["mql", "sql", "customer", "opportunity"])
def test_a_new_contact_cannot_start_past_lead(api, stage):
    """Creating a contact as a customer (or any stage past lead) is a 400
    naming lifecycle_stage; the contact is not created."""
    response = api.post(
        URL, {"email": "new@example.com", "lifecycle_stage": stage}, format="json"
    )

    assert response.status_code == 400
    assert "lifecycle_stage" in response.json()
    assert not Contact.objects.filter(email="new@example.com").exists()


@pytest.mark.parametrize("stage", ["subscriber", "lead"])
def test_a_new_contact_may_start_as_subscriber_or_lead(api, stage):
    """The top of the funnel is where a contact is created."""
    response = api.post(
        URL, {"email": "new@example.com", "lifecycle_stage": stage}, format="json"
    )

    assert response.status_code == 201
    assert Contact.objects.get(email="new@example.com").lifecycle_stage == stage
