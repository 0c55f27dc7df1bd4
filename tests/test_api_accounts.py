"""/api/accounts/: filters, validation of name and domain, query counts."""

import pytest
from rest_framework.test import APIClient

from crm.models import Account
from tests.api_support import make_manager, make_rep, token_client
from tests.factories import AccountFactory

pytestmark = pytest.mark.django_db

URL = "/api/accounts/"


@pytest.fixture
def api():
    return token_client(make_manager())


def ids(response):
    return {row["id"] for row in response.json()["results"]}


def test_the_api_needs_a_token():
    """Without credentials the account list answers 401."""
    assert APIClient().get(URL).status_code == 401


def test_filter_by_industry_country_and_tier(api):
    """industry, country and tier narrow the list to the matching accounts."""
    wanted = AccountFactory(industry="retail", country="Kenya", tier="tier1")
    AccountFactory(industry="retail", country="Kenya", tier="tier2")
    AccountFactory(industry="software", country="Kenya", tier="tier1")

    response = api.get(URL, {"industry": "retail", "country": "Kenya", "tier": "tier1"})

    assert ids(response) == {wanted.pk}


def test_filter_by_owner(api):
    """owner lists the accounts one user owns."""
    rep = make_rep()
    owned = AccountFactory(owner=rep)
    AccountFactory()

    assert ids(api.get(URL, {"owner": rep.pk})) == {owned.pk}


def test_create_stores_the_bare_domain(api):
    """A website URL given as domain is stored as its bare host name."""
    response = api.post(
        URL,
        {"name": "Acme", "domain": "https://www.Acme.com/about", "tier": "tier1"},
        format="json",
    )

    assert response.status_code == 201, response.json()
    assert Account.objects.get(pk=response.json()["id"]).domain == "acme.com"


def test_a_duplicate_name_or_domain_is_a_400_naming_the_field(api):
    """Names clash whatever their case; domains clash once normalised."""
    AccountFactory(name="Acme", domain="acme.com")

    by_name = api.post(URL, {"name": "ACME"}, format="json")
    by_domain = api.post(
        URL, {"name": "Acme 2", "domain": "http://acme.com"}, format="json"
    )

    assert by_name.status_code == 400
    assert list(by_name.json()) == ["name"]
    assert by_domain.status_code == 400
    assert list(by_domain.json()) == ["domain"]


def test_an_unknown_tier_is_a_400_naming_tier(api):
    """A tier outside the choices is refused on tier."""
    response = api.post(URL, {"name": "Globex", "tier": "gold"}, format="json")

    assert response.status_code == 400
    assert "tier" in response.json()


def test_update_keeps_its_own_name(api):
    """Saving an account with its own name is not a clash with itself."""
    account = AccountFactory(name="Acme", industry="retail")

    response = api.patch(
        f"{URL}{account.pk}/", {"name": "Acme", "industry": "software"}, format="json"
    )

    assert response.status_code == 200, response.json()
    account.refresh_from_db()
    assert account.industry == "software"


@pytest.mark.parametrize("size", [3, 30])
def test_the_list_costs_the_same_queries_at_any_size(
    api, size, django_assert_num_queries
):
    """Token, count and one page query, however many accounts."""
    AccountFactory.create_batch(size, owner=make_rep())

    # Two of these load the user's model permissions.
    with django_assert_num_queries(5):
        response = api.get(URL)

    assert len(response.json()["results"]) == size


def test_a_rep_cannot_rename_an_account_or_give_it_an_owner():
    """Changing accounts takes the change_account permission reps lack."""
    account = AccountFactory(name="Acme")
    rep = make_rep()

    response = token_client(rep).patch(
        f"{URL}{account.pk}/", {"name": "Renamed", "owner": rep.pk}, format="json"
    )

    assert response.status_code == 403
    account.refresh_from_db()
    assert (account.name, account.owner) == ("Acme", None)


def test_a_rep_can_read_accounts():
    AccountFactory(name="Acme")

    response = token_client(make_rep()).get(URL)

    assert response.status_code == 200
    assert [row["name"] for row in response.json()["results"]] == ["Acme"]
