"""The nurture admin: cheap changelists and actions that go through services."""

import datetime as dt
import itertools

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.urls import reverse
from django.utils import timezone

from crm.models import Contact
from crm.roles import ensure_sales_groups
from nurture.models import Enrollment, Handoff, Task, Touch
from tests.admin_support import (
    assert_changelist_queries_constant,
    messages_of,
)
from tests.factories import (
    CadenceFactory,
    ContactFactory,
    EnrollmentFactory,
    HandoffFactory,
    RepFactory,
    RoutingRuleFactory,
    ScoringModelFactory,
    ScoringRuleFactory,
    StepFactory,
    TaskFactory,
    TouchFactory,
)

pytestmark = pytest.mark.django_db

MODEL_NUMBERS = itertools.count()
HOUR = dt.timedelta(hours=1)


def make_cadence(owner):
    step = StepFactory(cadence=CadenceFactory(sender=owner))
    EnrollmentFactory(cadence=step.cadence, contact=ContactFactory(owner=owner))


def make_step(owner):
    TouchFactory(step=StepFactory())


def make_enrollment(owner):
    EnrollmentFactory(contact=ContactFactory(owner=owner))


def make_touch(owner):
    TouchFactory(enrollment=EnrollmentFactory(contact=ContactFactory(owner=owner)))


def make_task(owner):
    TaskFactory(contact=ContactFactory(owner=owner), assignee=owner)


def make_scoring_model(owner):
    model = ScoringModelFactory(name=f"Model {next(MODEL_NUMBERS)}", is_default=False)
    ScoringRuleFactory(model=model)


def make_scoring_rule(owner):
    ScoringRuleFactory()


def make_routing_rule(owner):
    rule = RoutingRuleFactory(rep=RepFactory())
    HandoffFactory(routing_rule=rule)


def make_handoff(owner):
    HandoffFactory(contact=ContactFactory(owner=owner), assignee=owner)


CHANGELISTS = [
    ("admin:nurture_cadence_changelist", make_cadence),
    ("admin:nurture_step_changelist", make_step),
    ("admin:nurture_enrollment_changelist", make_enrollment),
    ("admin:nurture_touch_changelist", make_touch),
    ("admin:nurture_task_changelist", make_task),
    ("admin:nurture_scoringmodel_changelist", make_scoring_model),
    ("admin:nurture_scoringrule_changelist", make_scoring_rule),
    ("admin:nurture_routingrule_changelist", make_routing_rule),
    ("admin:nurture_handoff_changelist", make_handoff),
]


@pytest.mark.parametrize(("url_name", "make_row"), CHANGELISTS)
def test_changelist_query_count_does_not_grow_with_rows(
    admin_client, admin_user, django_assert_num_queries, url_name, make_row
):
    """A changelist runs the same number of queries for 30 rows as for 3."""
    assert_changelist_queries_constant(
        admin_client, admin_user, django_assert_num_queries, url_name, make_row
    )


def test_cadence_list_counts_steps_and_active_enrollments(admin_client):
    """Each cadence row shows its own step and active-enrollment counts."""
    cadence = CadenceFactory()
    StepFactory(cadence=cadence, position=1)
    StepFactory(cadence=cadence, position=2)
    EnrollmentFactory(cadence=cadence)
    EnrollmentFactory(cadence=cadence, state=Enrollment.State.EXITED)

    response = admin_client.get(reverse("admin:nurture_cadence_changelist"))

    (row,) = response.context["cl"].result_list
    assert (row.step_total, row.active_total) == (2, 1)


def test_contact_page_shows_touches_enrollments_tasks_and_handoffs(admin_client):
    """The contact page carries the nurture side of the contact's timeline."""
    contact = ContactFactory()
    cadence = CadenceFactory(name="Webinar follow-up")
    enrollment = EnrollmentFactory(contact=contact, cadence=cadence)
    TouchFactory(
        enrollment=enrollment,
        step=StepFactory(cadence=cadence, name="Intro email"),
        outcome=Touch.Outcome.CLICKED,
    )
    TaskFactory(contact=contact, title="Call about the pricing visit")
    HandoffFactory(contact=contact)

    response = admin_client.get(reverse("admin:crm_contact_change", args=[contact.pk]))

    page = response.content.decode()
    assert response.status_code == 200
    assert "Webinar follow-up" in page
    assert "Intro email" in page
    assert "Clicked" in page
    assert "Call about the pricing visit" in page
    assert "Pending" in page


def post_action(client, url_name, action, records, **extra):
    """POST an admin action for records and follow the redirect."""
    data = {
        "action": action,
        ACTION_CHECKBOX_NAME: [record.pk for record in records],
        **extra,
    }
    return client.post(reverse(url_name), data, follow=True)


def test_enroll_action_asks_for_a_cadence_then_enrolls(admin_client, admin_user):
    """Enrolling asks which cadence, enrolls the eligible and says why not."""
    # Given a cadence with a step, two eligible contacts and one do-not-contact.
    cadence = StepFactory(position=1).cadence
    ready = [ContactFactory(), ContactFactory()]
    blocked = ContactFactory(do_not_contact=True)
    selected = [*ready, blocked]

    # When the action is chosen, an intermediate page asks for the cadence.
    page = post_action(
        admin_client, "admin:crm_contact_changelist", "enroll_in_cadence", selected
    )
    assert page.status_code == 200
    assert "cadence" in page.context["form"].fields

    # And when the cadence is picked.
    response = post_action(
        admin_client,
        "admin:crm_contact_changelist",
        "enroll_in_cadence",
        selected,
        index="0",
        apply="Enroll",
        cadence=cadence.pk,
    )

    # Then the eligible contacts are enrolled by the current user.
    enrollments = Enrollment.objects.filter(cadence=cadence)
    assert {e.contact_id for e in enrollments} == {c.pk for c in ready}
    assert {e.enrolled_by_id for e in enrollments} == {admin_user.pk}
    notes = messages_of(response)
    assert f"Enrolled 2 contacts in {cadence}." in notes
    assert "1 not enrolled: the contact is marked do-not-contact (1)." in notes


def test_enroll_action_reports_contacts_already_enrolled(admin_client):
    """A contact already in the cadence is reported, not enrolled twice."""
    cadence = StepFactory(position=1).cadence
    already = EnrollmentFactory(cadence=cadence).contact

    response = post_action(
        admin_client,
        "admin:crm_contact_changelist",
        "enroll_in_cadence",
        [already],
        index="0",
        apply="Enroll",
        cadence=cadence.pk,
    )

    assert Enrollment.objects.filter(contact=already).count() == 1
    assert (
        "1 not enrolled: the contact is already enrolled in this cadence (1)."
        in messages_of(response)
    )


def test_pause_and_resume_actions_change_enrollment_state(admin_client):
    """Pause holds an active enrollment; resume sets it walking again."""
    enrollment = EnrollmentFactory()

    post_action(
        admin_client, "admin:nurture_enrollment_changelist", "pause", [enrollment]
    )
    enrollment.refresh_from_db()
    assert enrollment.state == Enrollment.State.PAUSED
    assert enrollment.paused_at is not None

    post_action(
        admin_client, "admin:nurture_enrollment_changelist", "resume", [enrollment]
    )
    enrollment.refresh_from_db()
    assert enrollment.state == Enrollment.State.ACTIVE
    assert enrollment.paused_at is None


def test_one_refusal_does_not_stop_the_other_records(admin_client):
    """A record the service refuses is named in a message; the rest change."""
    # Given one active and one already completed enrollment.
    active = EnrollmentFactory()
    done = EnrollmentFactory(state=Enrollment.State.COMPLETED)

    # When both are paused.
    response = post_action(
        admin_client, "admin:nurture_enrollment_changelist", "pause", [active, done]
    )

    # Then the active one pauses and the other is reported by name and reason.
    active.refresh_from_db()
    done.refresh_from_db()
    assert active.state == Enrollment.State.PAUSED
    assert done.state == Enrollment.State.COMPLETED
    notes = messages_of(response)
    assert f"{done}: only an active enrollment can be paused" in notes
    assert "Paused 1 enrollments." in notes


def test_accept_action_makes_the_contact_sales_qualified(admin_client, admin_user):
    """Accepting a handoff records the decision and moves the contact to SQL."""
    handoff = HandoffFactory(contact=ContactFactory(lifecycle_stage="mql"))

    response = post_action(
        admin_client, "admin:nurture_handoff_changelist", "accept", [handoff]
    )

    handoff.refresh_from_db()
    assert handoff.status == Handoff.Status.ACCEPTED
    assert handoff.contact.lifecycle_stage == Contact.Stage.SQL
    assert handoff.contact.stage_changes.get().actor == admin_user
    assert "Accepted 1 handoffs." in messages_of(response)


@pytest.mark.parametrize(
    ("action", "stage"),
    [
        ("reject_not_now", Contact.Stage.RECYCLED),
        ("reject_bad_fit", Contact.Stage.DISQUALIFIED),
    ],
)
def test_reject_actions_recycle_or_disqualify(admin_client, action, stage):
    """Not now recycles the lead; bad fit disqualifies it."""
    handoff = HandoffFactory(contact=ContactFactory(lifecycle_stage="mql"))

    post_action(admin_client, "admin:nurture_handoff_changelist", action, [handoff])

    handoff.refresh_from_db()
    assert handoff.status == Handoff.Status.REJECTED
    assert handoff.contact.lifecycle_stage == stage


def test_accepting_a_decided_handoff_is_reported(admin_client):
    """A handoff already decided stays as it was and the reason is shown."""
    handoff = HandoffFactory(status=Handoff.Status.REJECTED)

    response = post_action(
        admin_client, "admin:nurture_handoff_changelist", "accept", [handoff]
    )

    handoff.refresh_from_db()
    assert handoff.status == Handoff.Status.REJECTED
    assert f"{handoff}: the handoff has already been decided" in messages_of(response)


def test_mark_done_action_completes_open_tasks(admin_client):
    """Mark done sets the task done with a completion time."""
    task = TaskFactory()

    response = post_action(
        admin_client, "admin:nurture_task_changelist", "mark_done", [task]
    )

    task.refresh_from_db()
    assert task.status == Task.Status.DONE
    assert task.completed_at is not None
    assert "Marked 1 tasks done." in messages_of(response)


def test_admin_index_lists_my_pending_handoffs_and_overdue_tasks(client):
    """The index shows the signed-in rep's open handoffs and overdue tasks."""
    # Given a rep with a pending handoff, an overdue task and a future task.
    rep = RepFactory()
    rep.user.groups.add(ensure_sales_groups()["Sales reps"])
    now = timezone.now()
    HandoffFactory(assignee=rep.user, contact=ContactFactory(last_name="Okafor"))
    TaskFactory(assignee=rep.user, title="Call back Okafor", due_at=now - HOUR)
    TaskFactory(assignee=rep.user, title="Later call", due_at=now + HOUR)
    TaskFactory(title="Someone else's call", due_at=now - HOUR)
    client.force_login(rep.user)

    # When they open the admin index.
    page = client.get(reverse("admin:index")).content.decode()

    # Then their queue lists the handoff and the overdue task only.
    assert "My queue" in page
    assert "Okafor" in page
    assert "Call back Okafor" in page
    assert "Later call" not in page
    assert "Someone else&#x27;s call" not in page
