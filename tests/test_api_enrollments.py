"""/api/enrollments/, /api/cadences/ and /api/handoffs/: they call services."""

import pytest
from django.contrib.auth.models import Permission
from rest_framework.test import APIClient

from crm.models import StageChange
from nurture.models import Enrollment, Handoff
from tests.api_support import make_manager, make_rep, token_client
from tests.factories import (
    CadenceFactory,
    ContactFactory,
    EnrollmentFactory,
    HandoffFactory,
    StepFactory,
)

pytestmark = pytest.mark.django_db

URL = "/api/enrollments/"
State = Enrollment.State


@pytest.fixture
def manager():
    return make_manager()


@pytest.fixture
def api(manager):
    return token_client(manager)


@pytest.fixture
def cadence():
    return StepFactory(position=1).cadence


def test_enrollments_need_a_token():
    """Without credentials the enrollment list answers 401."""
    assert APIClient().get(URL).status_code == 401


def test_enroll_a_contact(api, manager, cadence):
    """POSTing a contact and cadence starts an active enrollment by the user."""
    contact = ContactFactory()

    response = api.post(
        URL, {"contact": contact.pk, "cadence": cadence.pk}, format="json"
    )

    assert response.status_code == 201, response.json()
    enrollment = Enrollment.objects.get(pk=response.json()["id"])
    assert (enrollment.contact, enrollment.cadence) == (contact, cadence)
    assert enrollment.state == State.ACTIVE
    assert enrollment.enrolled_by == manager
    assert response.json()["cadence_name"] == cadence.name


def test_enrolling_twice_is_a_400_naming_contact(api, cadence):
    """A contact already in the cadence is refused on contact."""
    contact = ContactFactory()
    EnrollmentFactory(contact=contact, cadence=cadence)

    response = api.post(
        URL, {"contact": contact.pk, "cadence": cadence.pk}, format="json"
    )

    assert response.status_code == 400
    assert list(response.json()) == ["contact"]
    assert Enrollment.objects.count() == 1


def test_an_inactive_cadence_is_a_400_naming_cadence(api):
    """A switched-off cadence takes nobody and says so on cadence."""
    cadence = StepFactory(position=1, cadence=CadenceFactory(is_active=False)).cadence

    response = api.post(
        URL, {"contact": ContactFactory().pk, "cadence": cadence.pk}, format="json"
    )

    assert response.status_code == 400
    assert "cadence" in response.json()


def test_a_rep_cannot_enroll_another_reps_contact(cadence):
    """Someone else's contact is unknown to a rep: 400 on contact."""
    rep = make_rep()
    theirs = ContactFactory(owner=make_rep())

    response = token_client(rep).post(
        URL, {"contact": theirs.pk, "cadence": cadence.pk}, format="json"
    )

    assert response.status_code == 400
    assert "contact" in response.json()
    assert not Enrollment.objects.exists()


def test_pause_then_resume(api):
    """pause holds an active enrollment; resume sets it walking again."""
    enrollment = EnrollmentFactory()

    paused = api.post(f"{URL}{enrollment.pk}/pause/")
    resumed = api.post(f"{URL}{enrollment.pk}/resume/")

    assert paused.status_code == 200
    assert paused.json()["state"] == State.PAUSED
    assert resumed.status_code == 200
    assert resumed.json()["state"] == State.ACTIVE


def test_pausing_a_paused_enrollment_is_a_400_naming_state(api):
    """Only an active enrollment can be paused; the refusal names state."""
    enrollment = EnrollmentFactory(state=State.PAUSED)

    response = api.post(f"{URL}{enrollment.pk}/pause/")

    assert response.status_code == 400
    assert "state" in response.json()


def test_a_rep_cannot_pause_another_reps_enrollment():
    """Another rep's enrollment is a 404 and stays active."""
    enrollment = EnrollmentFactory(contact=ContactFactory(owner=make_rep()))
    other = make_rep()
    other.user_permissions.add(Permission.objects.get(codename="change_enrollment"))

    response = token_client(other).post(f"{URL}{enrollment.pk}/pause/")

    assert response.status_code == 404
    enrollment.refresh_from_db()
    assert enrollment.state == State.ACTIVE


def test_the_list_filters_by_cadence_and_state(api, cadence):
    """cadence and state narrow the list to the matching enrollments."""
    wanted = EnrollmentFactory(cadence=cadence, state=State.PAUSED)
    EnrollmentFactory(cadence=cadence)
    EnrollmentFactory(state=State.PAUSED)

    response = api.get(URL, {"cadence": cadence.pk, "state": "paused"})

    assert [row["id"] for row in response.json()["results"]] == [wanted.pk]


@pytest.mark.parametrize("size", [3, 30])
def test_the_list_costs_the_same_queries_at_any_size(
    api, size, django_assert_num_queries
):
    """Token, manager check, count and one page query with its cadences."""
    EnrollmentFactory.create_batch(size)

    # Two of these load the user's model permissions.
    with django_assert_num_queries(6):
        response = api.get(URL)

    assert len(response.json()["results"]) == size


def test_cadences_are_listed_read_only(api, cadence):
    """Cadences are listed for picking one; they cannot be created here."""
    listed = api.get("/api/cadences/")
    created = api.post("/api/cadences/", {"name": "New"}, format="json")

    assert [row["name"] for row in listed.json()["results"]] == [cadence.name]
    assert created.status_code == 405


def test_a_rep_accepts_their_handoff():
    """Accepting a handoff marks it accepted and makes the contact an SQL."""
    rep = make_rep()
    handoff = HandoffFactory(
        assignee=rep, contact=ContactFactory(lifecycle_stage="mql")
    )

    response = token_client(rep).post(f"/api/handoffs/{handoff.pk}/accept/")

    assert response.status_code == 200, response.json()
    assert response.json()["status"] == Handoff.Status.ACCEPTED
    handoff.contact.refresh_from_db()
    assert handoff.contact.lifecycle_stage == "sql"


def test_a_rep_rejects_a_handoff_with_a_reason():
    """Rejecting as "not now" recycles the lead; a bad reason names reason."""
    rep = make_rep()
    handoff = HandoffFactory(
        assignee=rep, contact=ContactFactory(lifecycle_stage="mql")
    )
    api = token_client(rep)

    bad = api.post(f"/api/handoffs/{handoff.pk}/reject/", {"reason": "meh"})
    good = api.post(f"/api/handoffs/{handoff.pk}/reject/", {"reason": "not_now"})

    assert bad.status_code == 400
    assert "reason" in bad.json()
    assert good.status_code == 200
    assert good.json()["status"] == Handoff.Status.REJECTED
    assert StageChange.objects.get(contact=handoff.contact).to_stage == "recycled"


def test_deciding_a_decided_handoff_is_a_400_naming_status(api):
    """A handoff already accepted cannot be accepted again."""
    handoff = HandoffFactory(status=Handoff.Status.ACCEPTED)

    response = api.post(f"/api/handoffs/{handoff.pk}/accept/")

    assert response.status_code == 400
    assert "status" in response.json()


def test_a_rep_sees_only_their_handoffs():
    """Another rep's handoff is not listed and is a 404."""
    rep = make_rep()
    mine = HandoffFactory(assignee=rep)
    theirs = HandoffFactory(assignee=make_rep())
    api = token_client(rep)

    assert [row["id"] for row in api.get("/api/handoffs/").json()["results"]] == [
        mine.pk
    ]
    assert api.post(f"/api/handoffs/{theirs.pk}/accept/").status_code == 404
