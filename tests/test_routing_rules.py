"""Routing rule kinds, team strategies and rep availability."""

import datetime as dt
from collections import Counter

import pytest

from crm.models import Account, Contact
from nurture.models import RoutingRule, Team, TeamMembership
from nurture.services.programme import ensure_default_programme
from nurture.services.routing import (
    assign_owners,
    choose_assignee,
    out_of_office_note,
    route_contact,
)
from tests.factories import (
    AccountFactory,
    ContactFactory,
    HandoffFactory,
    RepFactory,
    RoutingRuleFactory,
    SegmentFactory,
    TeamFactory,
    TeamMembershipFactory,
)

pytestmark = pytest.mark.django_db

# A Monday, 10:00 UTC.
NOW = dt.datetime(2025, 3, 3, 10, 0, tzinfo=dt.UTC)
Match = RoutingRule.Match
Strategy = RoutingRule.Strategy


def team_of(*reps, weights=None):
    """A team holding the reps, with optional weights in the same order."""
    team = TeamFactory()
    for i, rep in enumerate(reps):
        TeamMembershipFactory(team=team, rep=rep, weight=(weights or [1] * 9)[i])
    return team


# Match kinds -----------------------------------------------------------------


def test_named_account_goes_to_the_account_owner_before_territory():
    """A tier-1 account's contact goes to its owner even though a region matches."""
    owner = RepFactory(region="East")
    RepFactory(region="Central")
    RoutingRuleFactory(position=5, match=Match.NAMED_ACCOUNT, name="Named")
    RoutingRuleFactory(position=10, region="Central", name="Central")
    account = AccountFactory(tier=Account.Tier.TIER_1, owner=owner.user)

    decision = route_contact(ContactFactory(account=account), now=NOW)

    assert decision.rep == owner
    assert decision.rule.name == "Named"


@pytest.mark.parametrize(
    "tier, has_owner", [(Account.Tier.TIER_2, True), (Account.Tier.TIER_1, False)]
)
def test_other_accounts_fall_through_the_named_account_rule(tier, has_owner):
    """A tier-2 account, or a named account without owner, uses later rules."""
    owner = RepFactory(region="East")
    central = RepFactory(region="Central")
    RoutingRuleFactory(position=5, match=Match.NAMED_ACCOUNT, name="Named")
    RoutingRuleFactory(position=10, region="Central", name="Central")
    account = AccountFactory(tier=tier, owner=owner.user if has_owner else None)

    decision = route_contact(ContactFactory(account=account), now=NOW)

    assert decision.rep == central
    assert decision.trace[0].matched is False


def test_out_of_office_account_owner_is_skipped_and_named():
    """When the owner is away, the lead goes on to the next rule and says why."""
    owner = RepFactory(
        user__first_name="Ann",
        user__last_name="Lee",
        out_of_office_from=dt.date(2025, 3, 1),
        out_of_office_until=dt.date(2025, 3, 10),
    )
    central = RepFactory(region="Central")
    RoutingRuleFactory(position=5, match=Match.NAMED_ACCOUNT, name="Named")
    RoutingRuleFactory(position=10, region="Central", name="Central")
    account = AccountFactory(tier=Account.Tier.TIER_1, owner=owner.user)

    decision = route_contact(ContactFactory(account=account), now=NOW)

    assert decision.rep == central
    assert "skipped Ann Lee (out of office until 2025-03-10)" in decision.reason


def test_territory_by_country_and_product_by_attribute():
    """A country rule and an attributes.<key> product rule each find their rep."""
    germany = RepFactory()
    analytics = RepFactory()
    fallback = RepFactory()
    RoutingRuleFactory(
        position=1,
        field="country",
        values="Germany,Austria",
        strategy=Strategy.SINGLE,
        rep=germany,
    )
    RoutingRuleFactory(
        position=2,
        field="attributes.product",
        values="analytics",
        strategy=Strategy.SINGLE,
        rep=analytics,
    )
    RoutingRuleFactory(
        position=3, match=Match.ALWAYS, strategy=Strategy.SINGLE, rep=fallback
    )

    def rep_for(**fields):
        return route_contact(ContactFactory(**fields), now=NOW).rep

    assert rep_for(country="Austria") == germany
    assert rep_for(country="India", attributes={"product": "Analytics"}) == analytics
    assert rep_for(country="India", attributes={"product": "crm"}) == fallback


def test_segment_rule_uses_the_api_filter_language():
    """A contact in the rule's segment goes to its rep; others fall through."""
    enterprise = RepFactory()
    fallback = RepFactory()
    segment = SegmentFactory(filters={"total_score_min": 60, "country": "India"})
    RoutingRuleFactory(
        position=1,
        match=Match.SEGMENT,
        segment=segment,
        strategy=Strategy.SINGLE,
        rep=enterprise,
    )
    RoutingRuleFactory(
        position=2, match=Match.ALWAYS, strategy=Strategy.SINGLE, rep=fallback
    )

    hot = route_contact(ContactFactory(country="India", total_score=70), now=NOW)
    cold = route_contact(ContactFactory(country="India", total_score=30), now=NOW)

    assert hot.rep == enterprise
    assert cold.rep == fallback
    assert cold.trace[0].note == f"not in segment {segment}"


def test_invalid_segment_does_not_match_and_says_why():
    """A segment with a bad key matches nobody; the trace names the key."""
    fallback = RepFactory()
    segment = SegmentFactory(filters={"contry": "India"})
    RoutingRuleFactory(position=1, match=Match.SEGMENT, segment=segment)
    RoutingRuleFactory(
        position=2, match=Match.ALWAYS, strategy=Strategy.SINGLE, rep=fallback
    )

    decision = route_contact(ContactFactory(), now=NOW)

    assert decision.rep == fallback
    assert "'contry'" in decision.trace[0].note


def test_inactive_rule_is_ignored():
    """A switched-off rule is never tried."""
    off = RepFactory()
    on = RepFactory()
    RoutingRuleFactory(
        position=1, match=Match.ALWAYS, strategy=Strategy.SINGLE, rep=off,
        is_active=False,
    )  # fmt: skip
    RoutingRuleFactory(position=2, match=Match.ALWAYS, strategy=Strategy.SINGLE, rep=on)

    assert route_contact(ContactFactory(), now=NOW).rep == on


# Strategies --------------------------------------------------------------------


def test_round_robin_rotates_through_the_team():
    """Six handoffs over a team of three give each member two, in turn."""
    reps = [RepFactory() for _ in range(3)]
    team = team_of(*reps)
    RoutingRuleFactory(match=Match.ALWAYS, strategy=Strategy.ROUND_ROBIN, team=team)

    chosen = [choose_assignee(ContactFactory(), now=NOW).rep for _ in range(6)]

    assert chosen == reps + reps
    assert Team.objects.get(pk=team.pk).assignments == 6
    assert set(TeamMembership.objects.values_list("assigned", flat=True)) == {2}


def test_weighted_round_robin_follows_the_weights():
    """Weights 1:2:3 over twelve handoffs give 2, 4 and 6."""
    reps = [RepFactory() for _ in range(3)]
    team = team_of(*reps, weights=[1, 2, 3])
    RoutingRuleFactory(match=Match.ALWAYS, strategy=Strategy.WEIGHTED, team=team)

    chosen = Counter(choose_assignee(ContactFactory(), now=NOW).rep for _ in range(12))

    assert [chosen[rep] for rep in reps] == [2, 4, 6]


def test_least_loaded_team_member_gets_the_lead():
    """The member with the fewest open handoffs per capacity is chosen."""
    busy = RepFactory(capacity=10)
    idle = RepFactory(capacity=10)
    HandoffFactory(assignee=busy.user)
    RoutingRuleFactory(
        match=Match.ALWAYS, strategy=Strategy.LEAST_LOADED, team=team_of(busy, idle)
    )

    assert route_contact(ContactFactory(), now=NOW).rep == idle


def test_single_rep_rule_assigns_to_that_rep_only():
    """A one-rep rule never spreads to others, even of the same region."""
    named = RepFactory(region="Central")
    RepFactory(region="Central")
    RoutingRuleFactory(match=Match.ALWAYS, strategy=Strategy.SINGLE, rep=named)

    assert {route_contact(ContactFactory(), now=NOW).rep for _ in range(3)} == {named}


def test_inactive_membership_is_not_in_the_team():
    """A member switched off in the team gets nothing and is not listed."""
    gone = RepFactory()
    stays = RepFactory()
    team = team_of(gone, stays)
    TeamMembership.objects.filter(rep=gone).update(is_active=False)
    RoutingRuleFactory(match=Match.ALWAYS, strategy=Strategy.ROUND_ROBIN, team=team)

    decisions = [route_contact(ContactFactory(), now=NOW) for _ in range(2)]

    assert {d.rep for d in decisions} == {stays}
    assert str(gone) not in decisions[0].reason


def test_route_contact_writes_nothing():
    """The dry run only reads: counters and last assignment stay as they were."""
    reps = [RepFactory() for _ in range(2)]
    team = team_of(*reps)
    RoutingRuleFactory(match=Match.ALWAYS, strategy=Strategy.ROUND_ROBIN, team=team)
    contact = ContactFactory()

    first = route_contact(contact, now=NOW)
    second = route_contact(contact, now=NOW)

    assert first.rep == second.rep == reps[0]
    assert Team.objects.get(pk=team.pk).assignments == 0
    assert not any(rep.last_assigned_at for rep in reps)


# Availability --------------------------------------------------------------------


def test_unavailable_reps_are_skipped_and_each_named_once():
    """Inactive, away and full members are passed over with their reasons."""
    ann = RepFactory(
        user__first_name="Ann",
        user__last_name="A",
        out_of_office_from=dt.date(2025, 3, 3),
        out_of_office_until=dt.date(2025, 3, 10),
    )
    bob = RepFactory(user__first_name="Bob", user__last_name="B", capacity=2)
    HandoffFactory.create_batch(2, assignee=bob.user)
    cid = RepFactory(user__first_name="Cid", user__last_name="C", is_active=False)
    dee = RepFactory(user__first_name="Dee", user__last_name="D")
    team = team_of(ann, bob, cid, dee)
    RoutingRuleFactory(
        name="Team", match=Match.ALWAYS, strategy=Strategy.ROUND_ROBIN, team=team
    )

    decision = route_contact(ContactFactory(), now=NOW)

    assert decision.rep == dee
    assert decision.reason == (
        "rule 'Team' chose Dee D (0/50 open handoffs); skipped "
        "Ann A (out of office until 2025-03-10), Bob B (at capacity 2/2), "
        "Cid C (inactive)"
    )


@pytest.mark.parametrize(
    "zone, expected",
    [
        # 23:30 UTC on 2 March is already 3 March in Kolkata, still 2 March
        # in New York.
        ("Asia/Kolkata", "out of office until 2025-03-05"),
        ("America/New_York", ""),
    ],
)
def test_out_of_office_is_judged_by_the_reps_own_date(zone, expected):
    """Whether the absence has begun depends on the date in the rep's zone."""
    rep = RepFactory(
        time_zone=zone,
        out_of_office_from=dt.date(2025, 3, 3),
        out_of_office_until=dt.date(2025, 3, 5),
    )
    late_sunday_utc = dt.datetime(2025, 3, 2, 23, 30, tzinfo=dt.UTC)

    assert out_of_office_note(rep, now=late_sunday_utc) == expected


def test_absence_without_end_date_lasts_and_past_absence_is_over():
    """An open-ended absence keeps the rep away; a finished one does not."""
    open_ended = RepFactory(out_of_office_from=dt.date(2025, 2, 1))
    back = RepFactory(
        out_of_office_from=dt.date(2025, 2, 1),
        out_of_office_until=dt.date(2025, 3, 2),
    )

    assert out_of_office_note(open_ended, now=NOW) == "out of office"
    assert out_of_office_note(back, now=NOW) == ""


def test_rep_outside_working_hours_still_receives_the_lead():
    """Working hours do not block routing: the lead queues for the morning."""
    night = RepFactory(
        time_zone="Asia/Tokyo",
        workday_start=dt.time(9),
        workday_end=dt.time(17),
    )
    RoutingRuleFactory(match=Match.ALWAYS, strategy=Strategy.SINGLE, rep=night)
    # 10:00 UTC is 19:00 in Tokyo, after the rep's day.

    assert route_contact(ContactFactory(), now=NOW).rep == night


def test_excluded_assignee_is_passed_over_for_reassignment():
    """Reassigning a breached handoff skips its current assignee."""
    reps = [RepFactory() for _ in range(2)]
    RoutingRuleFactory(
        match=Match.ALWAYS, strategy=Strategy.ROUND_ROBIN, team=team_of(*reps)
    )

    decision = route_contact(
        ContactFactory(), now=NOW, exclude_user_ids=[reps[0].user_id]
    )

    assert decision.rep == reps[1]
    assert f"skipped {reps[0]} (excluded)" in decision.reason


def test_nobody_free_names_every_skip_and_the_rules_tried():
    """With every rep away the decision is empty and explains itself."""
    away = RepFactory(out_of_office_from=dt.date(2025, 3, 1))
    RoutingRuleFactory(
        name="Only", match=Match.ALWAYS, strategy=Strategy.SINGLE, rep=away
    )

    decision = route_contact(ContactFactory(), now=NOW)

    assert decision.user is None
    assert decision.reason == (
        f"skipped {away} (out of office); rule 'Only' matched but no rep is free; "
        "no routing rule found a rep"
    )


# Bulk owner assignment ---------------------------------------------------------


def test_assign_owners_spreads_a_batch_over_a_team_and_counts_it():
    """Nine ownerless leads over a round-robin team of three give three each."""
    reps = [RepFactory() for _ in range(3)]
    team = team_of(*reps)
    RoutingRuleFactory(match=Match.ALWAYS, strategy=Strategy.ROUND_ROBIN, team=team)

    assert assign_owners(ContactFactory.create_batch(9), now=NOW) == 9

    for rep in reps:
        assert Contact.objects.filter(owner=rep.user).count() == 3
    assert set(TeamMembership.objects.values_list("assigned", flat=True)) == {3}
    assert Team.objects.get(pk=team.pk).assignments == 9


def test_assign_owners_uses_segment_and_named_account_rules():
    """Owners come from the account owner, then the segment, then the fallback."""
    owner = RepFactory()
    vip = RepFactory()
    fallback = RepFactory()
    RoutingRuleFactory(position=1, match=Match.NAMED_ACCOUNT)
    RoutingRuleFactory(
        position=2,
        match=Match.SEGMENT,
        segment=SegmentFactory(filters={"lead_source": "Reference"}),
        strategy=Strategy.SINGLE,
        rep=vip,
    )
    RoutingRuleFactory(
        position=3, match=Match.ALWAYS, strategy=Strategy.SINGLE, rep=fallback
    )
    named = ContactFactory(
        account=AccountFactory(tier=Account.Tier.TIER_1, owner=owner.user)
    )
    referred = ContactFactory(lead_source="Reference")
    other = ContactFactory(lead_source="Google")

    assert assign_owners([named, referred, other], now=NOW) == 3

    owners = dict(Contact.objects.values_list("pk", "owner"))
    assert owners == {
        named.pk: owner.user_id,
        referred.pk: vip.user_id,
        other.pk: fallback.user_id,
    }


@pytest.mark.parametrize("size", [3, 30])
def test_assign_owners_with_every_rule_kind_keeps_queries_fixed(
    size, django_assert_max_num_queries
):
    """A batch over segment, named-account and team rules costs fixed queries."""
    reps = [RepFactory() for _ in range(3)]
    RoutingRuleFactory(position=1, match=Match.NAMED_ACCOUNT)
    RoutingRuleFactory(
        position=2,
        match=Match.SEGMENT,
        segment=SegmentFactory(filters={"lead_source": "Reference"}),
        strategy=Strategy.WEIGHTED,
        team=team_of(*reps, weights=[1, 2, 3]),
    )
    RoutingRuleFactory(
        position=3,
        match=Match.ALWAYS,
        strategy=Strategy.ROUND_ROBIN,
        team=team_of(*reps),
    )
    contacts = ContactFactory.create_batch(size, lead_source="Reference")
    contacts += ContactFactory.create_batch(size, lead_source="Google")

    # loads: contacts, rules, reps, members, counts, segment; writes: 3 owner
    # updates, reps, 6 memberships, 2 teams; savepoint x2.
    with django_assert_max_num_queries(20):
        assert assign_owners(contacts, now=NOW) == 2 * size


# Default programme ---------------------------------------------------------------


def test_default_programme_routes_named_accounts_to_their_owner_first():
    """The default rules send a tier-1 contact to its owner, others by region."""
    # Given the default programme, run twice, and reps in two regions
    ensure_default_programme()
    ensure_default_programme()
    owner = RepFactory(region="East")
    central = RepFactory(region="Central")
    account = AccountFactory(tier=Account.Tier.TIER_1, owner=owner.user)

    # When a named-account lead and an ordinary Indian lead are routed
    named = route_contact(ContactFactory(account=account, country="India"), now=NOW)
    plain = route_contact(ContactFactory(country="India"), now=NOW)

    # Then the owner gets the first and Central the second; one rule, at 5
    assert named.rep == owner
    assert named.rule.position == 5
    assert plain.rep == central
    assert RoutingRule.objects.filter(match=Match.NAMED_ACCOUNT).count() == 1
