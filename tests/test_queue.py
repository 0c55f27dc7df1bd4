"""The rep's queue, the manager's SLA view and the handoff page, admin and API."""

import datetime as dt

import pytest
from django.contrib.auth.models import Permission
from django.urls import reverse
from django.utils import timezone

from crm.models import LifecycleStage
from nurture.models import Handoff
from nurture.services.sla_reports import rep_queue, team_sla
from tests.api_support import token_client
from tests.factories import (
    AccountFactory,
    ContactFactory,
    HandoffFactory,
    RepFactory,
    TaskFactory,
    UserFactory,
)

pytestmark = pytest.mark.django_db

NOW = dt.datetime(2025, 3, 5, 12, 0, tzinfo=dt.UTC)  # a Wednesday


def at(day, hour):
    return dt.datetime(2025, 3, day, hour, 0, tzinfo=dt.UTC)


def grant(user, *codenames):
    user.user_permissions.add(*Permission.objects.filter(codename__in=codenames))


@pytest.fixture
def team():
    """A manager with reps ann and bob (UTC, 9 to 5) and an outsider."""
    manager = RepFactory(user=UserFactory(username="boss"))
    ann = RepFactory(manager=manager, user=UserFactory(username="ann"))
    bob = RepFactory(manager=manager, user=UserFactory(username="bob"))
    outsider = RepFactory(manager=RepFactory(), user=UserFactory(username="zed"))
    for rep in (manager, ann, bob, outsider):
        grant(rep.user, "view_handoff", "change_handoff", "view_task", "change_task")
    return {"manager": manager, "ann": ann, "bob": bob, "outsider": outsider}


def _handoff(rep, created, due, **fields):
    return HandoffFactory(
        assignee=rep.user, created_at=created, sla_due_at=due, **fields
    )


@pytest.fixture
def history(team):
    """Handoffs with known outcomes; see each line for what it counts as."""
    ann, bob = team["ann"], team["bob"]
    # ann: decided in time after 1 business hour
    _handoff(
        ann,
        at(3, 10),
        at(3, 14),
        status="accepted",
        accepted_at=at(3, 11),
        first_touch_at=at(3, 11),
    )
    # ann: breached and still open
    _handoff(ann, at(3, 15), at(4, 11), status="breached", breached_at=at(4, 11))
    # ann: rejected in time after 3 business hours
    _handoff(
        ann,
        at(4, 9),
        at(4, 13),
        status="rejected",
        rejected_at=at(4, 12),
        first_touch_at=at(4, 12),
    )
    # bob: accepted late, 6 business hours after (Mon 16-17, Tue 9-14)
    _handoff(
        bob,
        at(3, 16),
        at(4, 12),
        status="accepted",
        breached_at=at(4, 12),
        accepted_at=at(4, 14),
        first_touch_at=at(4, 14),
    )
    # bob: still inside its SLA, not measured yet
    _handoff(bob, at(5, 11), at(5, 15))
    # bob: older than the 30-day window
    old = NOW - dt.timedelta(days=40)
    _handoff(
        bob,
        old,
        old + dt.timedelta(hours=4),
        status="accepted",
        accepted_at=old,
        first_touch_at=old,
    )
    # another manager's rep: not in the team
    _handoff(team["outsider"], at(3, 10), at(3, 11), status="breached",
             breached_at=at(3, 11))  # fmt: skip
    return team


def test_team_sla_figures_on_a_known_history(history):
    """Attainment, median first touch in business hours and open breaches."""
    report = team_sla(history["manager"].user, now=NOW)

    by_name = {s.rep.user.username: s for s in report.reps}
    assert set(by_name) == {"ann", "bob"}
    ann, bob = by_name["ann"], by_name["bob"]
    assert (ann.handoffs, ann.decided, ann.within_sla, ann.breached) == (3, 2, 2, 1)
    assert ann.attainment == pytest.approx(2 / 3)
    assert ann.median_first_touch_hours == pytest.approx(2.0)
    assert ann.open_breaches == 1
    assert (bob.handoffs, bob.attainment, bob.open_breaches) == (2, 0.0, 0)
    assert bob.median_first_touch_hours == pytest.approx(6.0)
    assert report.total.attainment == pytest.approx(0.5)
    assert report.total.median_first_touch_hours == pytest.approx(3.0)
    assert report.total.open_breaches == 1


def test_dashboard_page_is_for_managers_with_constant_queries(
    client, team, django_assert_max_num_queries
):
    """Managers see the team table; more reps cost no more queries; reps get 403."""
    url = reverse("admin:nurture_handoff_sla")
    client.force_login(team["manager"].user)
    _handoff(team["ann"], timezone.now(), timezone.now() + dt.timedelta(hours=1))
    client.get(url)  # warm caches (content types, sessions)

    with django_assert_max_num_queries(12) as few:
        response = client.get(url)
    for _ in range(5):
        rep = RepFactory(manager=team["manager"])
        _handoff(rep, timezone.now(), timezone.now() - dt.timedelta(minutes=5))
    with django_assert_max_num_queries(len(few.captured_queries)):
        more = client.get(url)

    assert response.status_code == 200
    assert str(team["ann"]) in response.content.decode()
    assert more.content.decode().count("<tr><td>") == 7
    client.force_login(team["ann"].user)
    assert client.get(url).status_code == 403


def test_queue_lists_own_work_by_time_left(team):
    """Overdue first, then soonest; other reps' work and far tasks are left out."""
    ann = team["ann"].user
    late_task = TaskFactory(assignee=ann, due_at=NOW - dt.timedelta(hours=2))
    handoff = _handoff(team["ann"], NOW, NOW + dt.timedelta(hours=1))
    soon_task = TaskFactory(assignee=ann, due_at=NOW + dt.timedelta(hours=3))
    TaskFactory(assignee=ann, due_at=NOW + dt.timedelta(days=3))
    TaskFactory(assignee=team["bob"].user, due_at=NOW)

    queue = rep_queue(ann, now=NOW)

    assert [item.record for item in queue.items] == [late_task, handoff, soon_task]
    assert [item.time_left_text for item in queue.items] == [
        "2h 00m overdue",
        "1h 00m left",
        "3h 00m left",
    ]
    assert queue.counts == {
        "pending_handoffs": 1,
        "breached_handoffs": 0,
        "overdue_tasks": 1,
        "due_tasks": 1,
    }


def test_queue_page_shows_counts_and_time_left(client, team):
    """The admin queue page lists the rep's handoff with its time left."""
    now = timezone.now()
    handoff = _handoff(team["ann"], now, now + dt.timedelta(hours=2, minutes=30))
    _handoff(team["bob"], now, now + dt.timedelta(hours=1))
    client.force_login(team["ann"].user)

    page = client.get(reverse("admin:nurture_handoff_queue")).content.decode()

    assert "1 pending handoffs" in page
    assert reverse("admin:nurture_handoff_change", args=[handoff.pk]) in page
    assert "2h 29m left" in page or "2h 30m left" in page
    assert page.count("Handoff:") == 1


def test_handoff_page_shows_the_context_in_sections(client, team):
    """The rep reads score, engagement, touches and account handoffs, not JSON."""
    handoff = _handoff(
        team["ann"],
        NOW,
        NOW + dt.timedelta(hours=4),
        context={
            "score": {"fit": 30, "intent": 40, "total": 70, "explanation": [
                {"rule": "Requested a demo", "kind": "intent", "points": 40},
                {"rule": "Pricing page", "kind": "intent", "points": 15,
                 "hits": 3, "at": "2025-03-05T08:30:00+00:00"}]},
            "events": [{"type": "pricing_visit", "occurred_at": "2025-03-05",
                        "properties": {"page": "/pricing"}}],
            "content": [{"title": "Buyer's guide", "occurred_at": "2025-03-04"}],
            "touches": [{"step": "Welcome", "channel": "email", "status": "sent",
                         "opened_at": "2025-03-04T10:00:00+00:00"}],
            "account_open_handoffs": [{"contact": "Other Person",
                                       "assignee": "bob", "status": "pending",
                                       "sla_due_at": "2025-03-05"}],
        },
    )  # fmt: skip
    client.force_login(team["ann"].user)

    page = client.get(reverse("admin:nurture_handoff_change", args=[handoff.pk]))

    html = page.content.decode()
    for text in (
        "Requested a demo",
        "pricing_visit",
        "Buyer&#x27;s guide",
        "Welcome",
        "2025-03-04T10:00:00+00:00",
        "Other Person",
        "The account's other open handoffs",
        "<td>Pricing page</td><td>intent</td><td>15</td><td>3</td>"
        "<td>2025-03-05 08:30</td>",
    ):
        assert text in html
    assert '"score"' not in html


def test_rep_cannot_open_or_decide_another_reps_handoff(client, team):
    """Admin page and API both hide bob's handoff from ann and refuse to act."""
    theirs = _handoff(team["bob"], NOW, NOW + dt.timedelta(hours=4))
    client.force_login(team["ann"].user)
    api = token_client(team["ann"].user)

    change_url = reverse("admin:nurture_handoff_change", args=[theirs.pk])
    assert client.get(change_url).status_code == 302  # admin: "does not exist"
    assert api.get(f"/api/handoffs/{theirs.pk}/").status_code == 404
    assert api.post(f"/api/handoffs/{theirs.pk}/accept/").status_code == 404
    theirs.refresh_from_db()
    assert theirs.status == Handoff.Status.PENDING


def test_api_detail_carries_context_and_accept_records_first_touch(team):
    """GET shows the snapshot; accepting over the API makes an SQL and a touch."""
    contact = ContactFactory(
        account=AccountFactory(name="Acme"), lifecycle_stage=LifecycleStage.MQL
    )
    handoff = HandoffFactory(
        contact=contact,
        assignee=team["ann"].user,
        context={"score": {"total": 70}},
    )
    api = token_client(team["ann"].user)

    detail = api.get(f"/api/handoffs/{handoff.pk}/").json()
    accepted = api.post(f"/api/handoffs/{handoff.pk}/accept/")

    assert detail["context"]["score"]["total"] == 70
    assert accepted.status_code == 200
    handoff.refresh_from_db()
    contact.refresh_from_db()
    assert handoff.first_touch_at == handoff.accepted_at
    assert contact.lifecycle_stage == LifecycleStage.SQL


def test_admin_reject_records_first_touch_and_recycles(client, team):
    """Rejecting "not now" from the admin recycles the lead and notes the touch."""
    contact = ContactFactory(lifecycle_stage=LifecycleStage.MQL)
    handoff = HandoffFactory(contact=contact, assignee=team["ann"].user)
    client.force_login(team["ann"].user)

    client.post(
        reverse("admin:nurture_handoff_changelist"),
        {"action": "reject_not_now", "_selected_action": [handoff.pk]},
    )

    handoff.refresh_from_db()
    contact.refresh_from_db()
    assert handoff.status == Handoff.Status.REJECTED
    assert handoff.first_touch_at == handoff.rejected_at
    assert contact.lifecycle_stage == LifecycleStage.RECYCLED


@pytest.mark.parametrize(
    "model", ["slapolicy", "webhooksubscription", "webhookdelivery"]
)
def test_sla_and_webhook_changelists_load_for_an_admin(admin_client, model):
    """Operators edit SLA policies and subscriptions and read deliveries."""
    from nurture.models import SlaPolicy, WebhookDelivery, WebhookSubscription

    SlaPolicy.objects.create(position=1, name="Default")
    subscription = WebhookSubscription.objects.create(
        name="CRM", url="http://127.0.0.1:9/", secret="x"
    )
    WebhookDelivery.objects.create(
        subscription=subscription,
        event="handoff.created",
        payload={},
        next_attempt_at=NOW,
        created_at=NOW,
    )

    response = admin_client.get(reverse(f"admin:nurture_{model}_changelist"))

    assert response.status_code == 200
    assert len(response.context["cl"].result_list) == 1


def test_api_lists_one_contacts_handoffs(team, django_assert_max_num_queries):
    """GET /api/handoffs/?contact=<id> lists only that contact's handoffs."""
    wanted = HandoffFactory(assignee=team["ann"].user)
    HandoffFactory(assignee=team["ann"].user)
    api = token_client(team["manager"].user)

    with django_assert_max_num_queries(8):
        response = api.get("/api/handoffs/", {"contact": wanted.contact_id})

    assert [row["id"] for row in response.json()["results"]] == [wanted.pk]
