"""The default programme: created once, sensible, and safe to re-run."""

import datetime as dt

import pytest
from django.core.management import call_command
from django.template import Context, Template

from nurture.models import Cadence, RoutingRule, ScoringModel, ScoringRule, Step
from nurture.services.programme import ensure_default_programme
from nurture.services.routing import route_contact
from tests.factories import ContactFactory, RepFactory, RoutingRuleFactory

pytestmark = pytest.mark.django_db

NOW = dt.datetime(2025, 3, 3, 10, 0, tzinfo=dt.UTC)
FORBIDDEN = ("tags", "lead_quality", "lead profile", "asymmetrique", "converted")


def test_programme_is_created_once_and_rerun_changes_nothing():
    """A second run creates nothing and leaves the first run's rows alone."""
    first = ensure_default_programme()
    counts = (
        Cadence.objects.count(),
        Step.objects.count(),
        ScoringModel.objects.count(),
        ScoringRule.objects.count(),
        RoutingRule.objects.count(),
    )

    second = ensure_default_programme()

    assert first["cadences"] == ["MQL nurture", "Re-engagement"]
    assert len(first["steps"]) == 6 + 2
    assert first["scoring_models"] == ["Default"]
    assert all(names == [] for names in second.values())
    assert counts == (
        Cadence.objects.count(),
        Step.objects.count(),
        ScoringModel.objects.count(),
        ScoringRule.objects.count(),
        RoutingRule.objects.count(),
    )


def test_cadence_mixes_channels_in_a_business_send_window():
    """The MQL cadence uses email, call and LinkedIn, weekdays 08-18."""
    ensure_default_programme()
    cadence = Cadence.objects.get(name="MQL nurture")
    steps = list(cadence.steps.order_by("position"))

    assert {s.channel for s in steps} == {"email", "call", "linkedin"}
    assert cadence.weekdays == [1, 2, 3, 4, 5]
    assert (cadence.send_window_start.hour, cadence.send_window_end.hour) == (8, 18)
    assert cadence.exit_on_reply and cadence.exit_on_meeting
    assert cadence.exit_on_handoff
    for step in steps:
        text = step.body if step.channel == "email" else step.task_instructions
        assert "{{ greeting_name }}" in text
        Template(step.subject + text).render(
            Context({"greeting_name": "Ada", "contact": None, "sender": "Bo"})
        )


def test_scoring_model_is_default_and_reads_no_sales_verdicts():
    """The default model scores fit and intent, never held-out columns."""
    ensure_default_programme()
    model = ScoringModel.objects.get(is_default=True)
    rules = list(model.rules.all())

    assert model.name == "Default"
    assert model.intent_half_life_days == 30
    assert {r.kind for r in rules} == {"fit", "intent"}
    assert any(r.points < 0 for r in rules if r.event_type == "unsubscribe")
    for rule in rules:
        assert not any(word in rule.field.lower() for word in FORBIDDEN)


def test_default_routing_sends_leads_to_their_region():
    """Mumbai goes West, other Indian cities Central, abroad East."""
    ensure_default_programme()
    west = RepFactory(region="West")
    central = RepFactory(region="Central")
    east = RepFactory(region="East")

    def rep_for(**fields):
        return route_contact(ContactFactory(**fields), now=NOW).rep

    assert rep_for(country="India", city="Thane & Outskirts") == west
    assert rep_for(country="India", city="Other Metro Cities") == central
    assert rep_for(country="United States", city="") == east
    assert rep_for(country="", city="") == central


def test_existing_rule_positions_are_kept():
    """An operator's rule at a default position keeps it; ours moves on."""
    RoutingRuleFactory(position=10, name="VIP", region="East")

    ensure_default_programme()

    assert RoutingRule.objects.get(position=10).name == "VIP"
    assert RoutingRule.objects.filter(name__startswith="West").get().position == 11


def test_setup_programme_command_prints_what_it_created(capsys):
    """The command reports counts per kind and is quiet on a re-run."""
    call_command("setup_programme")
    out = capsys.readouterr().out
    assert "cadences: 2 created" in out
    assert "+ MQL nurture" in out

    call_command("setup_programme")
    assert "routing rules: 0 created" in capsys.readouterr().out
