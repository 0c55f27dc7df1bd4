"""Round robin stays fair when two workers hand off leads at the same time."""

import threading
from collections import Counter

import pytest
from django.db import connection, transaction

from crm.models import Contact
from nurture.models import RoutingRule, Team, TeamMembership
from nurture.services.routing import choose_assignee
from tests.factories import (
    ContactFactory,
    RepFactory,
    RoutingRuleFactory,
    TeamFactory,
    TeamMembershipFactory,
)
from tests.test_routing_rules import NOW

HANDOFFS = 1000


def route_in_two_workers(team: Team, contact_ids: list[int]) -> list[int]:
    """Route the contacts from two threads at once.

    Return the chosen rep ids in the order the assignments were made: the
    team's counter, read inside each lead's transaction, numbers them.
    """
    halves = [contact_ids[0::2], contact_ids[1::2]]
    start = threading.Barrier(2)
    numbered: list[tuple[int, int]] = []
    errors: list[BaseException] = []

    def worker(ids):
        try:
            start.wait()
            for contact in Contact.objects.filter(pk__in=ids).order_by("pk"):
                # Each lead in its own transaction, as hand_off does.
                with transaction.atomic():
                    decision = choose_assignee(contact, now=NOW)
                    turn = Team.objects.values_list("assignments", flat=True)
                    numbered.append((turn.get(pk=team.pk), decision.rep.pk))
        except BaseException as error:  # surfaced in the main thread
            errors.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker, args=(half,)) for half in halves]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    numbered.sort()
    assert [turn for turn, _ in numbered] == list(range(1, len(numbered) + 1))
    return [rep_id for _, rep_id in numbered]


def running_counts(order: list[int], rep_ids: list[int]):
    """Yield each rep's count after every assignment, in order."""
    counts = Counter()
    for rep_id in order:
        counts[rep_id] += 1
        yield [counts[pk] for pk in rep_ids]


def team_rule(strategy, weights):
    """A fallback rule giving every lead to a team with these weights."""
    team = TeamFactory()
    reps = []
    for weight in weights:
        rep = RepFactory(capacity=HANDOFFS)
        TeamMembershipFactory(team=team, rep=rep, weight=weight)
        reps.append(rep)
    RoutingRuleFactory(match=RoutingRule.Match.ALWAYS, strategy=strategy, team=team)
    return team, reps


@pytest.mark.django_db(transaction=True)
def test_round_robin_is_even_under_two_concurrent_workers():
    """Over 1,000 leads routed by two workers, members differ by at most one."""
    # Given a round-robin team of three and 1,000 leads
    team, reps = team_rule(RoutingRule.Strategy.ROUND_ROBIN, [1, 1, 1])
    ids = [c.pk for c in ContactFactory.create_batch(HANDOFFS)]

    # When two workers route them at the same time
    order = route_in_two_workers(team, ids)

    # Then members never differ by more than one, at the end or on the way
    assert len(order) == HANDOFFS
    for counts in running_counts(order, [rep.pk for rep in reps]):
        assert max(counts) - min(counts) <= 1, counts
    chosen = Counter(order)
    # And the stored counters agree with what was handed out
    assigned = dict(TeamMembership.objects.values_list("rep_id", "assigned"))
    assert assigned == {rep.pk: chosen[rep.pk] for rep in reps}
    assert Team.objects.get(pk=team.pk).assignments == HANDOFFS


@pytest.mark.django_db(transaction=True)
def test_weighted_round_robin_matches_weights_under_two_concurrent_workers():
    """Weights 1:2:3 split 1,000 concurrent leads within one of their share."""
    # Given a weighted team and 1,000 leads
    weights = [1, 2, 3]
    team, reps = team_rule(RoutingRule.Strategy.WEIGHTED, weights)
    ids = [c.pk for c in ContactFactory.create_batch(HANDOFFS)]

    # When two workers route them at the same time
    order = route_in_two_workers(team, ids)

    # Then each member stays within one of weight / total weight throughout
    assert len(order) == HANDOFFS
    for n, counts in enumerate(running_counts(order, [r.pk for r in reps]), 1):
        for count, weight in zip(counts, weights, strict=True):
            share = n * weight / sum(weights)
            assert abs(count - share) < 1, (n, counts)
    assert Counter(order)[reps[2].pk] == 500
