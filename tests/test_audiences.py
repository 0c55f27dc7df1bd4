"""Retargeting: the channel fills audiences the API and a CSV export read."""

import datetime as dt

import pytest
from rest_framework.test import APIClient

from nurture.channels import AudienceChannel
from nurture.models import AudienceMember, Channel, Touch
from nurture.services.audiences import audience_name
from tests.api_support import make_rep
from tests.factories import ContactFactory, StepFactory, TouchFactory, UserFactory

pytestmark = pytest.mark.django_db

NOW = dt.datetime(2025, 3, 3, 10, 0, tzinfo=dt.UTC)


def retargeting_touches(count, name="Pricing retargeting"):
    step = StepFactory(channel=Channel.RETARGETING, name=name)
    return [
        TouchFactory(
            step=step, enrollment__cadence=step.cadence, status=Touch.Status.SENDING
        )
        for _ in range(count)
    ]


def test_the_audience_is_named_after_the_step():
    """A step called "Pricing retargeting" fills "pricing-retargeting"."""
    assert audience_name(StepFactory.build(name="Pricing retargeting")) == (
        "pricing-retargeting"
    )


def test_the_channel_adds_each_contact_once(django_assert_max_num_queries):
    """Sending adds members; sending again to the same contacts adds none."""
    touches = retargeting_touches(3)

    with django_assert_max_num_queries(2):
        deliveries = AudienceChannel(now=NOW).send(touches)
    AudienceChannel(now=NOW).send(touches)

    assert {d.status for d in deliveries.values()} == {Touch.Status.SENT}
    members = AudienceMember.objects.filter(audience="pricing-retargeting")
    assert sorted(members.values_list("contact_id", flat=True)) == sorted(
        t.contact_id for t in touches
    )


def test_a_removed_member_joins_again():
    """A contact taken out of the audience earlier is back after a new touch."""
    [touch] = retargeting_touches(1)
    AudienceMember.objects.create(
        audience="pricing-retargeting", contact=touch.contact,
        added_at=NOW - dt.timedelta(days=9), removed_at=NOW - dt.timedelta(days=1),
    )  # fmt: skip

    AudienceChannel(now=NOW).send([touch])

    member = AudienceMember.objects.get()
    assert (member.removed_at, member.added_at) == (None, NOW)


def test_the_api_lists_members_page_by_page(django_assert_num_queries):
    """GET /api/audiences/<name>/members/ pages current members, constant queries."""
    # Given five members, one removed, and a member of another audience
    touches = retargeting_touches(5)
    AudienceChannel(now=NOW).send(touches)
    AudienceMember.objects.filter(contact=touches[0].contact).update(removed_at=NOW)
    AudienceMember.objects.create(
        audience="other", contact=ContactFactory(), added_at=NOW
    )
    client = APIClient()
    client.force_authenticate(UserFactory(is_superuser=True))

    # When the first page of two is read
    with django_assert_num_queries(2):
        response = client.get(
            "/api/audiences/pricing-retargeting/members/", {"page_size": 2}
        )

    # Then it counts the four current members and shows contact details
    assert response.status_code == 200
    assert response.data["count"] == 4
    assert len(response.data["results"]) == 2
    first = response.data["results"][0]
    assert set(first) >= {"contact_id", "email", "added_at"}


def test_the_csv_export_holds_every_current_member():
    """The CSV has a header and one line per current member."""
    touches = retargeting_touches(3)
    AudienceChannel(now=NOW).send(touches)
    client = APIClient()
    client.force_authenticate(UserFactory(is_superuser=True))

    response = client.get("/api/audiences/pricing-retargeting/members.csv")

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    lines = b"".join(response.streaming_content).decode().strip().splitlines()
    assert lines[0] == "contact_id,email,first_name,last_name,added_at"
    assert len(lines) == 4


def test_a_rep_sees_only_their_own_contacts():
    """Audience lists follow the same visibility as contacts."""
    touches = retargeting_touches(2)
    rep = make_rep()
    touches[0].contact.owner = rep
    touches[0].contact.save()
    AudienceChannel(now=NOW).send(touches)
    client = APIClient()
    client.force_authenticate(rep)

    response = client.get("/api/audiences/pricing-retargeting/members/")

    assert [r["contact_id"] for r in response.data["results"]] == [
        touches[0].contact_id
    ]
