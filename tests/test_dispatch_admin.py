"""The cadence and touch admin: pause a cadence, see zones and failed sends."""

import datetime as dt

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.urls import reverse

from nurture.models import Cadence
from tests.factories import CadenceFactory, EnrollmentFactory, TouchFactory

pytestmark = pytest.mark.django_db


def test_pause_and_resume_cadence_actions_hold_and_release_it(admin_client):
    """Pause stamps paused_at; resume clears it and shifts due enrollments."""
    cadence = CadenceFactory()
    due = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)
    enrollment = EnrollmentFactory(cadence=cadence, next_due_at=due)
    url = reverse("admin:nurture_cadence_changelist")

    admin_client.post(url, {"action": "pause", ACTION_CHECKBOX_NAME: [cadence.pk]})
    cadence.refresh_from_db()
    assert cadence.paused_at is not None

    admin_client.post(url, {"action": "resume", ACTION_CHECKBOX_NAME: [cadence.pk]})
    cadence.refresh_from_db()
    enrollment.refresh_from_db()
    assert cadence.paused_at is None
    assert enrollment.next_due_at > due
    assert Cadence.objects.filter(paused_at__isnull=False).count() == 0


def test_touch_list_shows_the_zone_and_filters_failed_sends(admin_client):
    """The zone used is listed, and failed touches split by retry pending."""
    pending = TouchFactory(
        status="failed",
        retry_at=dt.datetime(2030, 1, 1, tzinfo=dt.UTC),
        local_zone="Asia/Kolkata (country)",
    )
    given_up = TouchFactory(status="failed", retry_at=None)
    TouchFactory(status="sent")
    url = reverse("admin:nurture_touch_changelist")

    page = admin_client.get(url)
    assert "Asia/Kolkata (country)" in page.content.decode()
    shown = admin_client.get(url, {"retry": "pending"}).context["cl"].result_list
    assert [t.pk for t in shown] == [pending.pk]
    shown = admin_client.get(url, {"retry": "given_up"}).context["cl"].result_list
    assert [t.pk for t in shown] == [given_up.pk]
