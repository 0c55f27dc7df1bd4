"""The simulation: the engine over simulated days, and the held-out truth."""

import datetime as dt
import re
from pathlib import Path

import pytest
from django.core.management import call_command
from django.db import transaction

from crm.models import Contact, EngagementEvent
from nurture.models import Handoff, Task, Touch
from nurture.simulation import Simulation, funnel_report
from tests.factories import ContactFactory, EngagementEventFactory, RepFactory

pytestmark = pytest.mark.django_db

START = dt.datetime(2025, 3, 3, 6, 0, tzinfo=dt.UTC)  # a Monday morning
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def pipeline():
    """Two regions of reps with a manager, and leads from cold to hot."""
    manager = RepFactory(region="Central")
    for region in ("Central", "West", "East"):
        RepFactory.create_batch(2, region=region, manager=manager)
    contacts = []
    for n in range(24):
        hot = n % 3 == 0
        contact = ContactFactory(
            email=f"lead{n}@example.com" if n % 2 else "",
            city="Mumbai" if n % 4 else "Delhi",
            lead_origin="Lead Add Form" if hot else "API",
            occupation="Working Professional" if hot else "Student",
            known_converted=hot,
        )
        EngagementEventFactory(
            contact=contact,
            type=EngagementEvent.Type.WEB_ACTIVITY,
            occurred_at=START,
            properties={"visits": 8, "seconds_on_site": 1500 if hot else 30},
        )
        contacts.append(contact)
    return contacts


def run_and_capture(days: int) -> dict:
    """Run a simulation and return what the engine decided, then roll back."""
    with transaction.atomic():
        result = Simulation(start=START, days=days, seed=3).run()
        captured = {
            "handed_off": sorted(Handoff.objects.values_list("contact_id", flat=True)),
            "touches": sorted(
                Touch.objects.values_list("contact_id", "step__position", "status")
            ),
            "tasks": Task.objects.count(),
            "stages": sorted(Contact.objects.values_list("pk", "lifecycle_stage")),
            "result": (result.enrolled, result.events_ingested, result.sla_breaches),
        }
        transaction.set_rollback(True)
    return captured


def test_simulation_walks_leads_through_cadence_scoring_and_handoff(pipeline):
    """Over a week, hot leads are handed off and cold ones keep being nurtured."""
    result = Simulation(start=START, days=7, seed=3).run()

    report = funnel_report()
    assert result.enrolled == 24
    assert result.ticks == 7 * 24
    # Each hot lead qualifies on its profile and site time, and is handed off.
    hot = {c.pk for c in pipeline if c.lead_origin == "Lead Add Form"}
    assert hot <= set(Handoff.objects.values_list("contact_id", flat=True))
    assert report["handoffs"]["created"] >= len(hot)
    assert report["handoffs"]["open"] == 0
    # Leads without an address get rep tasks; those with one get email.
    assert report["touches"][("email", "sent")] > 0
    assert report["touches"][("email", "skipped")] > 0
    assert report["touches"][("call", "task_created")] > 0
    assert report["tasks"]["done"] > 0
    # The held-out comparison: every hot lead converted in the fixture.
    assert report["conversion"]["base"]["rate"] == pytest.approx(8 / 24)
    assert report["conversion"]["handed_off"]["rate"] > 8 / 24


def test_simulation_never_reads_the_held_out_outcome(pipeline):
    """Flipping every known outcome changes nothing the engine decides."""
    as_imported = run_and_capture(days=5)

    Contact.objects.update(known_converted=None)
    blanked = run_and_capture(days=5)
    for contact in pipeline:
        Contact.objects.filter(pk=contact.pk).update(
            known_converted=not contact.known_converted
        )
    flipped = run_and_capture(days=5)

    assert as_imported["handed_off"]
    assert as_imported == blanked == flipped


def test_only_reports_and_the_importer_name_the_held_out_field():
    """The engine's code never mentions known_converted outside reporting."""
    allowed = {
        "crm/models.py",  # the field itself
        "crm/importers/leads.py",  # stores the file's Converted column
        "crm/admin.py",  # shows it read-only, labelled as the imported outcome
        "nurture/simulation.py",  # funnel_report compares against it
        "nurture/services/evaluation.py",  # measures scores against it
        "nurture/services/dispatch.py",  # defers it, so it is never loaded
        "nurture/services/fields.py",  # refuses to hand it to scoring rules
    }
    offenders = [
        str(path.relative_to(ROOT))
        for app in ("crm", "nurture", "config")
        for path in (ROOT / app).rglob("*.py")
        if "migrations" not in path.parts
        and re.search(r"known_converted", path.read_text())
        and str(path.relative_to(ROOT)) not in allowed
    ]
    assert offenders == []


def test_simulate_command_prints_the_funnel(pipeline):
    """`manage.py simulate` runs the days and prints stages, touches, handoffs."""
    from io import StringIO

    out = StringIO()
    call_command("simulate", days=2, seed=1, start=START.isoformat(), stdout=out)

    text = out.getvalue()
    assert "48 hourly ticks" in text
    assert "Contacts by lifecycle stage" in text
    assert "Touches by channel and status" in text
    assert re.search(r"Handoffs: \d+ created, \d+ accepted", text)
    assert re.search(r"all imported leads \(base\)\s+33\.3%", text)


def test_simulation_never_delivers_mail_through_the_configured_backend(
    pipeline, settings, tmp_path
):
    """Simulated sends stay in memory even when a real backend is configured."""
    settings.EMAIL_BACKEND = "django.core.mail.backends.filebased.EmailBackend"
    settings.EMAIL_FILE_PATH = str(tmp_path / "outbox")

    result = Simulation(start=START, days=3, seed=3).run()

    assert result.emails_built > 0
    assert not (tmp_path / "outbox").exists() or not any(
        (tmp_path / "outbox").iterdir()
    )
