"""Handoff and SLA policy admin: what can be edited and who may reassign."""

import datetime as dt
import json

import pytest
from django.contrib.admin import helpers
from django.core import mail
from django.urls import reverse
from django.utils import timezone

from crm.roles import SALES_MANAGERS, SALES_REPS, ensure_sales_groups
from nurture.models import (
    Handoff,
    SlaPolicy,
    Task,
    WebhookDelivery,
    WebhookSubscription,
)
from tests.factories import (
    ContactFactory,
    HandoffFactory,
    RepFactory,
    RoutingRuleFactory,
)

pytestmark = pytest.mark.django_db

ADD_POLICY = "admin:nurture_slapolicy_add"


def _policy_form(**overrides):
    data = {
        "position": "1",
        "name": "Hot leads",
        "min_score": "",
        "response_business_hours": "4",
        "escalation_chain": json.dumps(
            [{"action": "remind", "after_business_hours": 0}]
        ),
        "is_active": "on",
    }
    data.update(overrides)
    return data


@pytest.mark.parametrize(
    "chain, message",
    [
        ("[1]", "Step 1 is not an object"),
        ('{"a": 1}', "Give a list of steps"),
        ('[{"action": "explode"}]', "Step 1 has unknown action"),
        ('[{"action": "remind", "after_business_hours": "x"}]', "number of hours"),
        ('[{"action": "remind", "after_business_hours": -2}]', "0 or more"),
        ('[{"action": "remind", "after_business_hours": NaN}]', "number of hours"),
        ('[{"action": "remind"}, {"action": "remind"}]', "Step 2 repeats"),
    ],
)
def test_policy_form_refuses_a_chain_the_sweep_cannot_run(admin_client, chain, message):
    """A bad escalation chain is an error on escalation_chain, never a 500."""
    response = admin_client.post(
        reverse(ADD_POLICY), _policy_form(escalation_chain=chain)
    )

    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert message in " ".join(errors["escalation_chain"])
    assert not SlaPolicy.objects.exists()


@pytest.mark.parametrize("hours", ["-4", "0", "1e12"])
def test_policy_form_refuses_an_impossible_response_time(admin_client, hours):
    """Response hours must be positive and at most 2,000, named on the field."""
    response = admin_client.post(
        reverse(ADD_POLICY), _policy_form(response_business_hours=hours)
    )

    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert list(errors) == ["response_business_hours"]
    assert not SlaPolicy.objects.exists()


def test_policy_form_saves_a_good_policy(admin_client):
    """A sane policy saves with its chain as given."""
    response = admin_client.post(reverse(ADD_POLICY), _policy_form())

    assert response.status_code == 302
    policy = SlaPolicy.objects.get()
    assert policy.escalation_chain == [{"action": "remind", "after_business_hours": 0}]


@pytest.fixture
def sales_team():
    """A manager and reps ann and bob in the sales groups, routed by region."""
    groups = ensure_sales_groups()
    manager = RepFactory(user__username="boss")
    manager.user.groups.add(groups[SALES_MANAGERS])
    reps = {}
    for name in ("ann", "bob"):
        rep = RepFactory(user__username=name, manager=manager, region="Central")
        rep.user.groups.add(groups[SALES_REPS])
        reps[name] = rep
    RoutingRuleFactory(name="Central", region="Central")
    return {"manager": manager, **reps}


def test_rep_cannot_move_their_deadline_or_give_the_lead_away(client, sales_team):
    """POSTing the change form changes none of the routing or SLA fields."""
    ann, bob = sales_team["ann"], sales_team["bob"]
    contact = ContactFactory(owner=ann.user)
    handoff = HandoffFactory(contact=contact, assignee=ann.user)
    due = handoff.sla_due_at
    other = ContactFactory(owner=ann.user)
    client.force_login(ann.user)

    client.post(
        reverse("admin:nurture_handoff_change", args=[handoff.pk]),
        {
            "contact": other.pk,
            "assignee": bob.user.pk,
            "sla_due_at_0": "2030-01-01",
            "sla_due_at_1": "00:00:00",
            "routing_reason": "mine now",
            "routing_rule": "",
            "escalations-TOTAL_FORMS": "0",
            "escalations-INITIAL_FORMS": "0",
        },
    )

    handoff.refresh_from_db()
    assert (handoff.contact, handoff.assignee) == (contact, ann.user)
    assert handoff.sla_due_at == due
    assert handoff.routing_reason == ""


def _reassign(client, handoff):
    return client.post(
        reverse("admin:nurture_handoff_changelist"),
        {"action": "reassign", helpers.ACTION_CHECKBOX_NAME: [handoff.pk]},
        follow=True,
    )


def test_manager_reassigns_by_routing(
    client, sales_team, django_capture_on_commit_callbacks
):
    """The action routes past ann: bob owns the lead with a fresh SLA, an email,
    a follow-up task and a handoff.reassigned webhook."""
    ann, bob = sales_team["ann"], sales_team["bob"]
    WebhookSubscription.objects.create(
        name="CRM", url="http://127.0.0.1:9/", secret="x"
    )
    contact = ContactFactory(owner=ann.user)
    past = timezone.now() - dt.timedelta(days=3)
    handoff = HandoffFactory(
        contact=contact,
        assignee=ann.user,
        created_at=past,
        sla_due_at=past,
        status=Handoff.Status.BREACHED,
        breached_at=past,
    )
    client.force_login(sales_team["manager"].user)

    with django_capture_on_commit_callbacks(execute=True):
        response = _reassign(client, handoff)

    assert "Reassigned 1 handoffs." in response.content.decode()
    handoff.refresh_from_db()
    contact.refresh_from_db()
    assert handoff.assignee == bob.user == contact.owner
    assert handoff.status == Handoff.Status.PENDING
    assert handoff.sla_due_at > timezone.now()
    assert handoff.routing_reason.startswith("Reassigned by boss")
    assert handoff.tasks.get(status=Task.Status.OPEN).assignee == bob.user
    assert [m.to for m in mail.outbox] == [[bob.user.email]]
    delivery = WebhookDelivery.objects.get(event="handoff.reassigned")
    assert delivery.payload["from_user_id"] == ann.user.pk
    assert delivery.payload["assignee_id"] == bob.user.pk


def test_a_rep_cannot_reassign(client, sales_team):
    """The action is not offered to a rep, and posting it changes nothing."""
    ann = sales_team["ann"]
    handoff = HandoffFactory(contact=ContactFactory(owner=ann.user), assignee=ann.user)
    client.force_login(ann.user)

    page = client.get(reverse("admin:nurture_handoff_changelist"))
    _reassign(client, handoff)

    assert "reassign" not in dict(page.context["action_form"].fields["action"].choices)
    handoff.refresh_from_db()
    assert handoff.assignee == ann.user
