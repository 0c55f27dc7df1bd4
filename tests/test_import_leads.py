"""Importing the X Education lead export (Leads.csv)."""

import csv
import datetime as dt

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from crm.importers import import_leads
from crm.models import Contact, EngagementEvent

NOW = dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC)
LEADS = "GnyaneshKanchetti2002__XEducation-LeadScoringCaseStudy/Leads.csv"
METRICS = ("TotalVisits", "Total Time Spent on Website", "Page Views Per Visit")


def read_leads(shared_data):
    with open(shared_data / LEADS, encoding="utf-8-sig", newline="") as handle:
        return list(csv.DictReader(handle))


def write_leads(path, rows):
    """Write rows as a CRLF CSV with the real file's columns."""
    with open(path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


@pytest.mark.django_db
def test_full_file_lands_as_one_contact_per_prospect_with_its_events(shared_data):
    """Every prospect becomes a lead; each gets a web-activity event when any
    site metric is present and a last-activity event when one is named."""
    rows = read_leads(shared_data)
    expected_web = sum(any(r[m].strip() for m in METRICS) for r in rows)
    expected_last = sum(bool(r["Last Activity"].strip()) for r in rows)

    report = import_leads(shared_data / LEADS, now=NOW)

    assert report.errors == []
    assert report.created == len(rows) == 9240
    assert Contact.objects.count() == 9240
    assert Contact.objects.filter(lifecycle_stage="lead").count() == 9240
    web = EngagementEvent.objects.filter(type="web_activity")
    assert web.count() == expected_web == 9240
    assert EngagementEvent.objects.exclude(type="web_activity").count() == (
        expected_last
    )
    assert expected_last == 9240 - 103
    assert report.details["events_created"] == expected_web + expected_last
    assert report.seconds < 30


@pytest.mark.django_db
def test_full_file_values_are_cleaned_and_flags_kept(shared_data):
    """Sources fold to one spelling, Select means blank, the do-not flags and
    held-out Converted outcome arrive, and sales verdicts stay aside."""
    rows = read_leads(shared_data)
    google = sum(r["Lead Source"].strip().casefold() == "google" for r in rows)

    import_leads(shared_data / LEADS, now=NOW)

    assert Contact.objects.filter(lead_source="Google").count() == google == 2873
    assert not Contact.objects.filter(lead_source="google").exists()
    for field in ("city", "specialization", "occupation", "lead_source"):
        assert not Contact.objects.filter(**{field: "Select"}).exists()
    assert not Contact.objects.filter(attributes__heard_about_us="Select").exists()
    assert Contact.objects.filter(city="").count() == sum(
        r["City"] in ("", "Select") for r in rows
    )
    assert Contact.objects.filter(do_not_email=True).count() == 734
    assert Contact.objects.filter(do_not_call=True).count() == 2
    assert Contact.objects.filter(known_converted=True).count() == 3561
    assert Contact.objects.filter(known_converted=False).count() == 5679

    first = rows[0]
    contact = Contact.objects.get(external_id=f"xedu:{first['Prospect ID']}")
    assert contact.attributes["lead_number"] == first["Lead Number"]
    assert contact.attributes["after_contact"]["tags"] == first["Tags"]
    assert "Tags" not in contact.attributes and "tags" not in contact.attributes
    assert contact.attributes["wants_interview_guide"] is False

    second = rows[1]
    web = EngagementEvent.objects.get(external_id=f"xedu:{second['Prospect ID']}:web")
    assert web.properties == {
        "visits": 5,
        "seconds_on_site": 674,
        "pages_per_visit": 2.5,
    }
    assert web.occurred_at == NOW


@pytest.mark.django_db
def test_reimport_changes_nothing(shared_data):
    """A second run over the same file writes no contact and no event."""
    # given the file imported once
    import_leads(shared_data / LEADS, now=NOW)
    stamps = dict(Contact.objects.values_list("external_id", "updated_at"))
    events = EngagementEvent.objects.count()

    # when it is imported again a day later
    report = import_leads(shared_data / LEADS, now=NOW + dt.timedelta(days=1))

    # then every row is unchanged and nothing was touched
    assert (report.created, report.updated, report.unchanged) == (0, 0, 9240)
    assert report.details["events_created"] == 0
    assert Contact.objects.count() == 9240
    assert EngagementEvent.objects.count() == events
    assert dict(Contact.objects.values_list("external_id", "updated_at")) == stamps


@pytest.mark.django_db
def test_bad_rows_are_reported_by_line_and_column_and_good_rows_land(
    shared_data, tmp_path
):
    """A non-numeric metric or a missing Prospect ID rejects only its row."""
    rows = read_leads(shared_data)[:6]
    rows[1]["TotalVisits"] = "lots"
    rows[3]["Prospect ID"] = ""
    rows[4]["Page Views Per Visit"] = "2,5x"
    rows[5]["Prospect ID"] = rows[0]["Prospect ID"]
    path = write_leads(tmp_path / "Leads.csv", rows)

    report = import_leads(path, now=NOW)

    # Line 1 is the header, so the n-th data row (from 0) is line n + 2.
    assert [(e.row_number, e.field) for e in report.errors] == [
        (3, "TotalVisits"),
        (5, "Prospect ID"),
        (6, "Page Views Per Visit"),
        (7, "Prospect ID"),
    ]
    assert "lots" in report.errors[0].reason
    assert report.created == 2
    assert set(Contact.objects.values_list("external_id", flat=True)) == {
        f"xedu:{rows[0]['Prospect ID']}",
        f"xedu:{rows[2]['Prospect ID']}",
    }


@pytest.mark.django_db
def test_last_activity_maps_to_event_types_and_suppression(shared_data, tmp_path):
    """Known activities map to their event type, others to "other" with the
    label; an unsubscribe sets unsubscribed_at, a bounce is not called hard."""
    rows = read_leads(shared_data)[:4]
    activities = ["Unsubscribed", "Email Bounced", "Approached upfront", "SMS Sent"]
    for row, activity in zip(rows, activities, strict=True):
        row["Last Activity"] = activity
    path = write_leads(tmp_path / "Leads.csv", rows)

    import_leads(path, now=NOW)

    def last(row):
        return EngagementEvent.objects.select_related("contact").get(
            external_id=f"xedu:{row['Prospect ID']}:last"
        )

    unsubscribed, bounced, other, sms = (last(row) for row in rows)
    assert unsubscribed.type == "unsubscribe"
    assert unsubscribed.contact.unsubscribed_at == NOW
    assert bounced.type == "email_bounce"
    assert bounced.contact.hard_bounced_at is None
    assert bounced.properties["bounce"] == "unknown"
    assert other.type == "other"
    assert other.properties["label"] == "Approached upfront"
    assert sms.type == "sms_sent"
    assert sms.contact.unsubscribed_at is None


@pytest.mark.django_db
def test_reimport_keeps_suppression_and_stage_set_since(shared_data, tmp_path):
    """A re-import never clears a do-not-email flag or resets the stage."""
    # given a lead imported, then marked do-not-email and moved to MQL
    rows = read_leads(shared_data)[:1]
    rows[0]["Do Not Email"] = "No"
    path = write_leads(tmp_path / "Leads.csv", rows)
    import_leads(path, now=NOW)
    Contact.objects.update(do_not_email=True, lifecycle_stage="mql")

    # when the file is imported again
    report = import_leads(path, now=NOW)

    # then the contact keeps both
    contact = Contact.objects.get()
    assert report.unchanged == 1
    assert contact.do_not_email is True
    assert contact.lifecycle_stage == "mql"


def lookups(queries):
    """The queries other than the INSERTs that bulk_create splits into."""
    return [q["sql"] for q in queries if not q["sql"].startswith("INSERT")]


@pytest.mark.django_db
def test_query_count_does_not_grow_with_rows(
    shared_data, tmp_path, django_assert_max_num_queries
):
    """A batch of 400 leads runs the same lookups as a batch of 4, and in all
    far fewer queries than rows (SQLite caps one INSERT at 999 values, so
    Django splits a bulk_create into a few statements there)."""
    rows = read_leads(shared_data)
    small = write_leads(tmp_path / "small.csv", rows[:4])
    large = write_leads(tmp_path / "large.csv", rows[100:500])

    with CaptureQueriesContext(connection) as small_run:
        import_leads(small, now=NOW, batch_size=500)
    with django_assert_max_num_queries(40) as large_run:
        import_leads(large, now=NOW, batch_size=500)

    assert len(lookups(large_run.captured_queries)) == len(
        lookups(small_run.captured_queries)
    )
    assert Contact.objects.count() == 404
