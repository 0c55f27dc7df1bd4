"""The routing admin: rules, teams, segments and the routing dry run."""

import datetime as dt
import itertools

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from crm.models import Account
from crm.roles import SALES_MANAGERS, SALES_REPS, ensure_sales_groups
from nurture.models import RoutingRule, Team, TeamMembership
from tests.admin_support import assert_changelist_queries_constant, rows_shown
from tests.factories import (
    AccountFactory,
    ContactFactory,
    RepFactory,
    RoutingRuleFactory,
    SegmentFactory,
    TeamFactory,
    TeamMembershipFactory,
)

pytestmark = pytest.mark.django_db

Match = RoutingRule.Match
Strategy = RoutingRule.Strategy
DRY_RUN = "admin:nurture_routingrule_test"
WRITES = ("INSERT", "UPDATE", "DELETE")


@pytest.fixture
def sales_team():
    """A manager and two reps in the real sales groups, and a round-robin team."""
    groups = ensure_sales_groups()
    manager = RepFactory(user__username="boss")
    manager.user.groups.add(groups[SALES_MANAGERS])
    reps = []
    for name in ("ann", "bob"):
        rep = RepFactory(user__username=name, user__first_name=name.title(),
                         user__last_name="Rep", manager=manager)  # fmt: skip
        rep.user.groups.add(groups[SALES_REPS])
        reps.append(rep)
    team = TeamFactory(name="Inside sales")
    for rep in reps:
        TeamMembershipFactory(team=team, rep=rep)
    return {"manager": manager, "ann": reps[0], "bob": reps[1], "team": team}


def test_dry_run_shows_rule_rep_and_skips_for_a_manager(client, sales_team):
    """A manager picks a contact by email and sees the rule, the rep and why."""
    # Given a named-account rule whose owner is away, then a team fallback
    ann, bob = sales_team["ann"], sales_team["bob"]
    ann.out_of_office_from = dt.date(2000, 1, 1)
    ann.save()
    RoutingRuleFactory(position=5, name="Named accounts", match=Match.NAMED_ACCOUNT)
    RoutingRuleFactory(
        position=10,
        name="Inside sales",
        match=Match.ALWAYS,
        strategy=Strategy.ROUND_ROBIN,
        team=sales_team["team"],
    )
    account = AccountFactory(tier=Account.Tier.TIER_1, owner=ann.user)
    ContactFactory(email="lead@example.com", account=account)
    client.force_login(sales_team["manager"].user)

    # When the manager asks who would get the lead
    response = client.get(reverse(DRY_RUN), {"contact": "LEAD@example.com"})

    # Then the page names the rule, the rep and the skip, rule by rule
    assert response.status_code == 200
    decision = response.context["decision"]
    assert decision.rule.name == "Inside sales"
    assert decision.rep == bob
    body = response.content.decode()
    assert "skipped Ann Rep (out of office)" in body
    assert [(o.rule.name, o.matched) for o in decision.trace] == [
        ("Named accounts", True),
        ("Inside sales", True),
    ]


def test_dry_run_changes_nothing(admin_client, sales_team):
    """Asking twice gives the same rep and writes no row at all."""
    RoutingRuleFactory(
        match=Match.ALWAYS, strategy=Strategy.ROUND_ROBIN, team=sales_team["team"]
    )
    contact = ContactFactory()
    url = reverse(DRY_RUN)

    with CaptureQueriesContext(connection) as captured:
        first = admin_client.get(url, {"contact": contact.pk})
        second = admin_client.get(url, {"contact": contact.pk})

    assert first.context["decision"].rep == second.context["decision"].rep
    writes = [q["sql"] for q in captured if q["sql"].lstrip().startswith(WRITES)]
    assert writes == []
    assert Team.objects.get().assignments == 0
    assert set(TeamMembership.objects.values_list("assigned", flat=True)) == {0}
    contact.refresh_from_db()
    assert contact.owner is None


def test_rep_cannot_open_the_dry_run(client, sales_team):
    """A rep (no view_routingrule) is refused the page and the rules."""
    client.force_login(sales_team["ann"].user)

    assert client.get(reverse(DRY_RUN)).status_code == 403
    changelist = client.get(reverse("admin:nurture_routingrule_changelist"))
    assert changelist.status_code == 403


def test_unknown_contact_is_a_form_error(admin_client):
    """An id or email that matches nobody is reported, not a server error."""
    response = admin_client.get(reverse(DRY_RUN), {"contact": "nobody@example.com"})

    assert response.status_code == 200
    assert response.context["decision"] is None
    assert "No contact with id or email" in response.content.decode()


def test_rule_changelist_links_to_the_dry_run(admin_client):
    """The rules list offers the "Test routing" page."""
    response = admin_client.get(reverse("admin:nurture_routingrule_changelist"))

    assert reverse(DRY_RUN) in response.content.decode()


def test_rule_form_refuses_a_team_strategy_without_a_team(admin_client):
    """Saving a round-robin rule with no team names the team field."""
    response = admin_client.post(
        reverse("admin:nurture_routingrule_add"),
        {
            "position": 1,
            "name": "Broken",
            "is_active": "on",
            "match": Match.ALWAYS,
            "strategy": Strategy.ROUND_ROBIN,
        },
    )

    assert response.status_code == 200
    assert "team" in response.context["adminform"].form.errors
    assert not RoutingRule.objects.exists()


def test_segment_page_counts_its_contacts(admin_client):
    """The segment's detail page shows how many contacts it holds now."""
    ContactFactory.create_batch(3, country="India")
    ContactFactory(country="Spain")
    segment = SegmentFactory(filters={"country": "India"})

    response = admin_client.get(
        reverse("admin:nurture_segment_change", args=[segment.pk])
    )

    assert response.status_code == 200
    assert response.context["adminform"].form.instance == segment
    fields = {
        field.field["name"]: field.contents()
        for fieldset in response.context["adminform"]
        for line in fieldset
        for field in line
        if field.is_readonly
    }
    assert fields["contact_count"] == "3"


def test_segment_with_an_unknown_filter_is_refused_by_key(admin_client):
    """Saving filters with a typo names the key and saves nothing."""
    response = admin_client.post(
        reverse("admin:nurture_segment_add"),
        {"name": "Typo", "description": "", "filters": '{"contry": "India"}'},
    )

    assert response.status_code == 200
    errors = response.context["adminform"].form.errors["filters"]
    assert "'contry'" in errors[0]


def test_team_page_lists_members_inline(admin_client, sales_team):
    """A team's page edits its members, weights and counters in one place."""
    team = sales_team["team"]

    response = admin_client.get(reverse("admin:nurture_team_change", args=[team.pk]))

    assert response.status_code == 200
    (inline,) = response.context["inline_admin_formsets"]
    members = {form.original.rep for form in inline if form.original}
    assert members == {sales_team["ann"], sales_team["bob"]}


def make_rule(n):
    team = TeamFactory()
    TeamMembershipFactory(team=team)
    RoutingRuleFactory(
        match=Match.SEGMENT,
        segment=SegmentFactory(),
        strategy=Strategy.ROUND_ROBIN,
        team=team,
        rep=RepFactory(),
    )


@pytest.mark.parametrize(
    "url_name",
    [
        "admin:nurture_routingrule_changelist",
        "admin:nurture_team_changelist",
        "admin:nurture_segment_changelist",
    ],
)
def test_routing_changelists_keep_query_count_as_rows_grow(
    admin_client, django_assert_num_queries, url_name
):
    """Rules, teams and segments list 30 rows with the queries of 3."""
    numbers = itertools.count()
    response = assert_changelist_queries_constant(
        admin_client,
        None,
        django_assert_num_queries,
        url_name,
        lambda _user: make_rule(next(numbers)),
    )
    assert rows_shown(response) == 30


def _post_rule(client, **fields):
    data = {
        "position": 1,
        "name": "Rule",
        "is_active": "on",
        "match": Match.FIELD,
        "strategy": Strategy.REGION_LEAST_LOADED,
        "region": "Central",
        **fields,
    }
    return client.post(reverse("admin:nurture_routingrule_add"), data)


@pytest.mark.parametrize(
    "field",
    [
        "password",
        "account__owner__password",
        "owner__username",
        "owner",
        "nosuchfield",
        "known_converted",
        "account__nosuchfield",
        "attributes.",
    ],
)
def test_rule_form_refuses_a_field_a_rule_cannot_test(admin_client, field):
    """Secrets, relations, held-out and unknown fields are errors on field."""
    RepFactory(region="Central")

    response = _post_rule(admin_client, field=field, values="x")

    assert response.status_code == 200
    assert list(response.context["adminform"].form.errors) == ["field"]
    assert not RoutingRule.objects.exists()


@pytest.mark.parametrize(
    "field", ["country", "attributes.product", "account__industry", ""]
)
def test_rule_form_accepts_fields_a_rule_can_test(admin_client, field):
    """Contact fields, attributes and account fields save."""
    RepFactory(region="Central")

    response = _post_rule(admin_client, field=field, values="x")

    assert response.status_code == 302
    assert RoutingRule.objects.get().field == field


def test_rule_form_refuses_a_region_no_active_rep_is_in(admin_client):
    """A region rule for Atlantis, where no active rep works, names region."""
    RepFactory(region="Central")
    RepFactory(region="Atlantis", is_active=False)

    refused = _post_rule(admin_client, region="Atlantis")
    saved = _post_rule(admin_client, region=" central ")

    assert list(refused.context["adminform"].form.errors) == ["region"]
    assert saved.status_code == 302
    assert RoutingRule.objects.get().region == "central"
