"""Who sees what in the admin: reps their own work, managers everything."""

import pytest
from django.contrib.auth.models import Permission
from django.urls import reverse

from crm.roles import ensure_sales_groups
from nurture.models import Handoff, Task
from tests.admin_support import rows_shown
from tests.factories import (
    ContactFactory,
    EngagementEventFactory,
    EnrollmentFactory,
    HandoffFactory,
    RepFactory,
    TaskFactory,
    TouchFactory,
)

pytestmark = pytest.mark.django_db

MODELS = {
    "crm": ["contact", "engagementevent", "stagechange", "opportunity"],
    "nurture": ["enrollment", "touch", "task", "handoff"],
}


def grant_sales_permissions(user):
    """Give a user the view and change rights a sales rep works with."""
    codenames = [
        f"{verb}_{model}"
        for models in MODELS.values()
        for model in models
        for verb in ("view", "change")
    ]
    user.user_permissions.add(*Permission.objects.filter(codename__in=codenames))


@pytest.fixture
def team():
    """A manager with two reps, each owning a contact with its work."""
    manager = RepFactory(user__username="manager")
    reps = [
        RepFactory(user__username="ana", manager=manager),
        RepFactory(user__username="ben", manager=manager),
    ]
    work = {}
    for rep in [manager, *reps]:
        grant_sales_permissions(rep.user)
        contact = ContactFactory(owner=rep.user, last_name=rep.user.username)
        EngagementEventFactory(contact=contact)
        enrollment = EnrollmentFactory(contact=contact)
        TouchFactory(enrollment=enrollment)
        work[rep.user.username] = {
            "contact": contact,
            "task": TaskFactory(contact=contact, assignee=rep.user),
            "handoff": HandoffFactory(contact=contact, assignee=rep.user),
        }
    return {"manager": manager, "ana": reps[0], "ben": reps[1], "work": work}


def listed(client, app, model):
    """Return the records a user's changelist shows."""
    response = client.get(reverse(f"admin:{app}_{model}_changelist"))
    assert response.status_code == 200
    return list(response.context["cl"].result_list)


def test_rep_lists_only_their_own_records(client, team):
    """A rep's changelists hold only their contacts, tasks, handoffs and work."""
    client.force_login(team["ana"].user)
    ana = team["ana"].user

    assert [c.owner for c in listed(client, "crm", "contact")] == [ana]
    assert [t.assignee for t in listed(client, "nurture", "task")] == [ana]
    assert [h.assignee for h in listed(client, "nurture", "handoff")] == [ana]
    for app, model in [
        ("crm", "engagementevent"),
        ("nurture", "enrollment"),
        ("nurture", "touch"),
    ]:
        assert [r.contact.owner for r in listed(client, app, model)] == [ana]


def test_manager_lists_every_record(client, team):
    """A manager sees the whole team's contacts, tasks and handoffs."""
    client.force_login(team["manager"].user)

    assert len(listed(client, "crm", "contact")) == 3
    assert len(listed(client, "nurture", "task")) == 3
    assert len(listed(client, "nurture", "handoff")) == 3
    assert len(listed(client, "nurture", "touch")) == 3


@pytest.mark.parametrize(
    ("app", "model", "key"),
    [
        ("crm", "contact", "contact"),
        ("nurture", "handoff", "handoff"),
        ("nurture", "task", "task"),
    ],
)
def test_rep_cannot_open_another_reps_record(client, team, app, model, key):
    """Opening another rep's record by URL redirects away, never shows it."""
    client.force_login(team["ana"].user)
    other = team["work"]["ben"][key]
    own = team["work"]["ana"][key]

    theirs = client.get(reverse(f"admin:{app}_{model}_change", args=[other.pk]))
    mine = client.get(reverse(f"admin:{app}_{model}_change", args=[own.pk]))

    assert theirs.status_code in (302, 404)
    assert mine.status_code == 200


def test_manager_opens_a_reps_contact(client, team):
    """A manager may open any rep's contact."""
    client.force_login(team["manager"].user)
    contact = team["work"]["ben"]["contact"]

    response = client.get(reverse("admin:crm_contact_change", args=[contact.pk]))

    assert response.status_code == 200


def test_rep_action_cannot_touch_another_reps_records(client, team):
    """Posting another rep's ids to an action leaves those records alone."""
    # Given ana posts ben's task and handoff ids alongside her own task.
    client.force_login(team["ana"].user)
    ben = team["work"]["ben"]
    own_task = team["work"]["ana"]["task"]

    # When she runs "Mark done" and "Accept".
    client.post(
        reverse("admin:nurture_task_changelist"),
        {"action": "mark_done", "_selected_action": [ben["task"].pk, own_task.pk]},
    )
    client.post(
        reverse("admin:nurture_handoff_changelist"),
        {"action": "accept", "_selected_action": [ben["handoff"].pk]},
    )

    # Then only her own task changed.
    ben["task"].refresh_from_db()
    ben["handoff"].refresh_from_db()
    own_task.refresh_from_db()
    assert ben["task"].status == Task.Status.OPEN
    assert ben["handoff"].status == Handoff.Status.PENDING
    assert own_task.status == Task.Status.DONE


def test_rep_cannot_point_a_task_at_another_reps_contact(client, team):
    """The task form accepts only contacts the rep can see."""
    client.force_login(team["ana"].user)
    task = team["work"]["ana"]["task"]
    url = reverse("admin:nurture_task_change", args=[task.pk])
    form = client.get(url).context["adminform"].form

    assert (
        not form.fields["contact"]
        .queryset.filter(pk=team["work"]["ben"]["contact"].pk)
        .exists()
    )


def test_rep_changelist_shows_rows_for_a_rep_with_no_work(client):
    """A rep with nothing assigned gets an empty list, not an error."""
    rep = RepFactory()
    grant_sales_permissions(rep.user)
    ContactFactory(owner=RepFactory().user)
    client.force_login(rep.user)

    response = client.get(reverse("admin:crm_contact_changelist"))

    assert response.status_code == 200
    assert rows_shown(response) == 0


def test_rep_in_the_sales_reps_group_works_their_queue(client):
    """With only the "Sales reps" group, a rep can finish tasks and accept."""
    # Given a rep whose rights come from the real sales group.
    groups = ensure_sales_groups()
    rep = RepFactory()
    rep.user.groups.add(groups["Sales reps"])
    contact = ContactFactory(owner=rep.user, lifecycle_stage="mql")
    task = TaskFactory(contact=contact, assignee=rep.user)
    handoff = HandoffFactory(contact=contact, assignee=rep.user)
    client.force_login(rep.user)

    # When they mark the task done and accept the handoff.
    client.post(
        reverse("admin:nurture_task_changelist"),
        {"action": "mark_done", "_selected_action": [task.pk]},
    )
    client.post(
        reverse("admin:nurture_handoff_changelist"),
        {"action": "accept", "_selected_action": [handoff.pk]},
    )

    # Then both are recorded and the contact is sales qualified.
    task.refresh_from_db()
    handoff.refresh_from_db()
    contact.refresh_from_db()
    assert task.status == Task.Status.DONE
    assert handoff.status == Handoff.Status.ACCEPTED
    assert contact.lifecycle_stage == "sql"


def contact_form_data(response) -> dict:
    """Return the POST data the contact change form would submit as shown."""
    form = response.context["adminform"].form
    data = {}
    for name, field in form.fields.items():
        value = form.initial.get(name, field.initial)
        if value is None:
            continue
        if isinstance(value, bool):
            if value:
                data[name] = "on"
            continue
        data[name] = (
            field.prepare_value(value) if hasattr(field, "prepare_value") else value
        )
    return data


def test_rep_cannot_hand_their_contact_to_another_rep(client, team):
    """Only a manager moves a lead between reps; a rep's form cannot."""
    client.force_login(team["ana"].user)
    contact = team["work"]["ana"]["contact"]
    url = reverse("admin:crm_contact_change", args=[contact.pk])
    data = contact_form_data(client.get(url))
    data["owner"] = team["ben"].user.pk

    client.post(url, data)

    contact.refresh_from_db()
    assert contact.owner == team["ana"].user


def test_rep_may_add_a_suppression_but_not_lift_one(client, team):
    """A rep can mark do-not-email; clearing it again takes a manager."""
    client.force_login(team["ana"].user)
    contact = team["work"]["ana"]["contact"]
    url = reverse("admin:crm_contact_change", args=[contact.pk])

    data = contact_form_data(client.get(url))
    data["do_not_email"] = "on"
    client.post(url, data)
    contact.refresh_from_db()
    assert contact.do_not_email is True

    data = contact_form_data(client.get(url))
    data.pop("do_not_email", None)
    client.post(url, data)
    contact.refresh_from_db()
    assert contact.do_not_email is True


def test_manager_can_move_a_contact_to_another_rep(client, team):
    client.force_login(team["manager"].user)
    contact = team["work"]["ana"]["contact"]
    url = reverse("admin:crm_contact_change", args=[contact.pk])
    data = contact_form_data(client.get(url))
    data["owner"] = team["ben"].user.pk

    response = client.post(url, data)

    assert response.status_code == 302
    contact.refresh_from_db()
    assert contact.owner == team["ben"].user
