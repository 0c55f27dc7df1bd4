"""The engine end to end through a real django-q2 cluster in another process."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.conf import settings
from django_q.tasks import async_task

from crm.models import EngagementEvent
from nurture.models import Handoff, Touch
from tests.factories import (
    ContactFactory,
    EngagementEventFactory,
    EnrollmentFactory,
    RepFactory,
    RoutingRuleFactory,
    ScoringRuleFactory,
    StepFactory,
)

ROOT = Path(__file__).resolve().parents[1]
WAIT_SECONDS = 90

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.cluster]


def database_url() -> str:
    """Point the cluster process at the database this test is using."""
    db = settings.DATABASES["default"]
    if db["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{db['NAME']}"
    user = db["USER"] or "postgres"
    host = db["HOST"] or "127.0.0.1"
    return f"postgres://{user}@{host}:{db['PORT'] or 5432}/{db['NAME']}"


@pytest.fixture
def cluster(tmp_path):
    """Start `manage.py qcluster` against the test database; stop it after."""
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings.local",
        "DATABASE_URL": database_url(),
        "DJANGO_EMAIL_BACKEND": "django.core.mail.backends.filebased.EmailBackend",
        "DJANGO_EMAIL_FILE_PATH": str(tmp_path / "mail"),
        "NURTURE_Q_WORKERS": "1",
    }
    process = subprocess.Popen(
        [sys.executable, "manage.py", "qcluster"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    yield tmp_path / "mail"
    process.send_signal(signal.SIGINT)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def wait_for(condition, *, what: str):
    """Poll the database until a real background process has done its work."""
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.25)
    pytest.fail(f"the cluster did not {what} within {WAIT_SECONDS} s")


def test_cluster_sends_due_email_and_hands_off_a_qualified_lead(cluster):
    """Queued engine tasks run in a real cluster: mail is sent, a lead handed off."""
    # Given an enrolled contact whose first email is due, and a second
    # contact whose new demo request carries enough intent to qualify.
    enrollment = EnrollmentFactory(contact=ContactFactory(email="ada@example.com"))
    StepFactory(cadence=enrollment.cadence, position=1)
    RoutingRuleFactory(region="Central")
    RepFactory(region="Central")
    ScoringRuleFactory(
        kind="intent", event_type=EngagementEvent.Type.DEMO_REQUEST, points=100
    )
    hot = ContactFactory()
    EngagementEventFactory(contact=hot, type=EngagementEvent.Type.DEMO_REQUEST)

    # When the engine's tasks are queued for the cluster
    async_task("nurture.tasks.dispatch_due_touches_task")
    async_task("nurture.tasks.rescore_contacts_task")

    # Then the email goes out once through the configured mail backend
    wait_for(
        lambda: Touch.objects.filter(status=Touch.Status.SENT).exists(),
        what="send the due touch",
    )
    touch = Touch.objects.get()
    assert touch.contact_id == enrollment.contact_id
    assert touch.message_id
    mail = [path.read_text() for path in cluster.glob("*.log")]
    assert sum("To: ada@example.com" in message for message in mail) == 1

    # And the qualified lead is handed to the region's rep with an SLA
    wait_for(
        lambda: Handoff.objects.filter(contact=hot).exists(),
        what="hand off the qualified lead",
    )
    handoff = Handoff.objects.get(contact=hot)
    assert handoff.assignee is not None
    assert handoff.sla_due_at > handoff.created_at

    # And the rep is told by email, after the handoff committed
    wait_for(
        lambda: any(
            f"To: {handoff.assignee.email}" in path.read_text()
            for path in cluster.glob("*.log")
        ),
        what="email the rep about the handoff",
    )
