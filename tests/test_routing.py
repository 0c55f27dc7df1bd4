"""Routing: which rep gets a contact, by rule, region, load and turn."""

import datetime as dt

import pytest

from crm.models import Contact, Rep
from nurture.services.routing import assign_owners, route_contact
from tests.factories import (
    ContactFactory,
    HandoffFactory,
    RepFactory,
    RoutingRuleFactory,
)

pytestmark = pytest.mark.django_db

NOW = dt.datetime(2025, 3, 3, 10, 0, tzinfo=dt.UTC)


@pytest.fixture
def region_rules():
    """West for Mumbai-area leads, East outside India, Central for the rest."""
    RoutingRuleFactory(
        position=1,
        name="West India",
        field="city",
        values="Mumbai, Thane",
        region="West",
    )
    RoutingRuleFactory(
        position=2,
        name="Abroad",
        field="attributes.abroad",
        values="yes",
        region="East",
    )
    RoutingRuleFactory(position=3, name="Everyone else", region="Central")


def test_first_matching_rule_by_position_wins_case_insensitively(region_rules):
    """A Mumbai lead goes West even though the catch-all also matches."""
    west = RepFactory(region="West")
    RepFactory(region="Central")
    contact = ContactFactory(city="MUMBAI")

    decision = route_contact(contact, now=NOW)

    assert decision.rep == west
    assert decision.user == west.user
    assert decision.rule.name == "West India"
    assert "West India" in decision.reason


def test_attribute_rule_and_catch_all(region_rules):
    """An attributes.<key> rule matches its key; others fall to the catch-all."""
    east = RepFactory(region="East")
    central = RepFactory(region="Central")

    abroad = route_contact(ContactFactory(attributes={"abroad": "Yes"}), now=NOW)
    local = route_contact(ContactFactory(city="Pune"), now=NOW)

    assert abroad.rep == east
    assert local.rep == central
    assert local.rule.name == "Everyone else"


def test_no_rule_matches_gives_no_user():
    """Without a matching rule the decision names nobody and says why."""
    RoutingRuleFactory(field="country", values="Spain", region="Central")
    RepFactory(region="Central")

    decision = route_contact(ContactFactory(country="India"), now=NOW)

    assert decision.user is None
    assert decision.rep is None
    assert "no routing rule" in decision.reason


def test_least_loaded_rep_of_region_is_chosen():
    """The rep with the fewest open handoffs per capacity gets the lead."""
    RoutingRuleFactory(region="Central")
    busy = RepFactory(region="Central", capacity=10)
    idle = RepFactory(region="Central", capacity=10)
    HandoffFactory(assignee=busy.user)

    assert route_contact(ContactFactory(), now=NOW).rep == idle


def test_ties_go_to_the_rep_assigned_longest_ago():
    """With equal load, the rep whose last assignment is oldest goes next."""
    RoutingRuleFactory(region="Central")
    RepFactory(region="Central", last_assigned_at=NOW - dt.timedelta(hours=1))
    waiting = RepFactory(region="Central", last_assigned_at=NOW - dt.timedelta(days=1))

    assert route_contact(ContactFactory(), now=NOW).rep == waiting


def test_reps_at_capacity_are_skipped_and_named():
    """A full rep is passed over and the reason says so."""
    RoutingRuleFactory(region="Central")
    full = RepFactory(region="Central", capacity=1)
    other = RepFactory(region="Central", capacity=5)
    HandoffFactory(assignee=full.user)
    HandoffFactory(assignee=other.user)

    decision = route_contact(ContactFactory(), now=NOW)

    assert decision.rep == other
    assert f"skipped {full} (at capacity 1/1)" in decision.reason


def test_full_region_falls_through_to_next_rule():
    """When every rep of the matching rule is full, a later rule is tried."""
    RoutingRuleFactory(position=1, name="West", region="West")
    RoutingRuleFactory(position=2, name="Backstop", region="Central")
    full = RepFactory(region="West", capacity=1)
    HandoffFactory(assignee=full.user)
    central = RepFactory(region="Central")

    decision = route_contact(ContactFactory(), now=NOW)

    assert decision.rep == central
    assert decision.rule.name == "Backstop"


def test_fixed_rep_wins_over_region_unless_inactive():
    """A rule's own rep is used while active; otherwise the region's reps."""
    fixed = RepFactory(region="West")
    RoutingRuleFactory(rep=fixed, region="Central")
    central = RepFactory(region="Central")

    assert route_contact(ContactFactory(), now=NOW).rep == fixed
    Rep.objects.filter(pk=fixed.pk).update(is_active=False)
    assert route_contact(ContactFactory(), now=NOW).rep == central


def test_assign_owners_spreads_evenly_by_round_robin():
    """Nine leads over three equal reps give each rep three."""
    RoutingRuleFactory(region="Central")
    reps = [RepFactory(region="Central") for _ in range(3)]
    contacts = ContactFactory.create_batch(9)

    assigned = assign_owners(contacts, now=NOW)

    assert assigned == 9
    for rep in reps:
        assert Contact.objects.filter(owner=rep.user).count() == 3
        rep.refresh_from_db()
        assert rep.last_assigned_at == NOW


def test_assign_owners_routes_by_region_and_keeps_existing_owners(region_rules):
    """Each lead goes to its region's rep; an owned lead keeps its owner."""
    west = RepFactory(region="West")
    central = RepFactory(region="Central")
    keeper = RepFactory(region="East")
    mumbai = ContactFactory(city="Mumbai")
    pune = ContactFactory(city="Pune")
    owned = ContactFactory(city="Mumbai", owner=keeper.user)

    assigned = assign_owners([mumbai, pune, owned], now=NOW)

    assert assigned == 2
    assert Contact.objects.get(pk=mumbai.pk).owner == west.user
    assert Contact.objects.get(pk=pune.pk).owner == central.user
    assert Contact.objects.get(pk=owned.pk).owner == keeper.user


def test_assign_owners_skips_full_reps():
    """A rep at capacity receives no owners; the others share the batch."""
    RoutingRuleFactory(region="Central")
    full = RepFactory(region="Central", capacity=1)
    HandoffFactory(assignee=full.user)
    free = RepFactory(region="Central")

    assign_owners(ContactFactory.create_batch(4), now=NOW)

    assert Contact.objects.filter(owner=full.user).count() == 0
    assert Contact.objects.filter(owner=free.user).count() == 4


@pytest.mark.parametrize("size", [3, 30])
def test_assign_owners_query_count_does_not_grow_with_batch(
    size, django_assert_max_num_queries
):
    """Routing a batch costs the same queries for 3 contacts as for 30."""
    RoutingRuleFactory(region="Central")
    RepFactory(region="Central")
    RepFactory(region="Central")
    contacts = ContactFactory.create_batch(size)

    # loads: contacts, rules, reps, counts; writes: 2 owners, reps, savepoint x2
    with django_assert_max_num_queries(9):
        assert assign_owners(contacts, now=NOW) == size


def test_managers_are_not_in_the_region_pool():
    """A region's manager is not handed leads; their reps are."""
    RoutingRuleFactory(region="Central")
    manager = RepFactory(region="Central")
    rep = RepFactory(region="Central", manager=manager)

    assert route_contact(ContactFactory(), now=NOW).rep == rep
