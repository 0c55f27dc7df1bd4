"""Importing a generic contact CSV through a column mapping."""

import csv
import datetime as dt
import json

import pytest
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.core.validators import validate_email
from django.db import connection
from django.test.utils import CaptureQueriesContext

from crm.importers import ImportMappingError, import_contacts
from crm.models import Account, Contact
from tests.factories import AccountFactory, ContactFactory

NOW = dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC)
FAKE_LEADS = "mautic__mautic/fakeleaddata.csv"


def read_fake_leads(shared_data):
    with open(shared_data / FAKE_LEADS, encoding="utf-8-sig", newline="") as handle:
        return list(csv.DictReader(handle))


def is_valid(email):
    try:
        validate_email(email.strip())
    except ValidationError:
        return False
    return True


@pytest.mark.django_db
def test_fake_leads_import_with_folded_emails_and_accounts(shared_data):
    """Each row with a valid email is one contact under its folded address,
    linked to its company; rows with neither email nor name are reported."""
    rows = read_fake_leads(shared_data)
    valid = {r["email"].strip().lower() for r in rows if is_valid(r["email"])}
    nameless = [
        n + 2
        for n, r in enumerate(rows)
        if not r["email"].strip() and not (r["firstname"] or r["lastname"]).strip()
    ]

    report = import_contacts(shared_data / FAKE_LEADS, now=NOW)

    assert Contact.objects.count() == report.created == len(valid) == 50
    assert set(Contact.objects.values_list("email", flat=True)) == valid
    assert [(e.row_number, e.field) for e in report.errors] == [
        (n, "email") for n in nameless
    ]
    assert nameless == [52, 53, 54, 55]

    penny = Contact.objects.select_related("account").get(
        email="pennykmoore@dayrep.com"
    )
    assert (penny.first_name, penny.last_name) == ("Penny", "Moore")
    assert penny.lead_source == "csv"
    assert penny.title == ""
    assert penny.attributes["salutation"] == "Mrs."
    assert penny.account.name == "Williams Bros."
    assert penny.account.domain == "wikifire.co.uk"
    assert Account.objects.count() == len({r["company"] for r in rows if r["company"]})


@pytest.mark.django_db
def test_contact_import_twice_changes_nothing(shared_data):
    """A second run matches everyone by email and writes nothing."""
    # given the file imported once
    import_contacts(shared_data / FAKE_LEADS, now=NOW)
    stamps = dict(Contact.objects.values_list("email", "updated_at"))

    # when it is imported again
    report = import_contacts(shared_data / FAKE_LEADS, now=NOW)

    # then nothing is created or changed
    assert (report.created, report.updated, report.unchanged) == (0, 0, 50)
    assert report.details["accounts_created"] == 0
    assert dict(Contact.objects.values_list("email", "updated_at")) == stamps


@pytest.mark.django_db
def test_existing_contact_matched_by_folded_email_is_updated(tmp_path):
    """A row whose email differs only in case updates the stored contact;
    blank cells leave its values alone; its company is found by name."""
    # given a contact and an account already stored
    contact = ContactFactory(email="ann@example.com", city="Leeds", phone="1")
    account = AccountFactory(name="Acme Ltd")
    path = tmp_path / "contacts.csv"
    path.write_text(
        "email,firstname,lastname,city,phone,company\r\n"
        "Ann@Example.COM,Ann,Lee,York,,ACME LTD\r\n"
    )

    # when the file is imported
    report = import_contacts(
        path,
        {
            "email": "email",
            "firstname": "first_name",
            "lastname": "last_name",
            "city": "city",
            "phone": "phone",
            "company": "account",
        },
        now=NOW,
    )

    # then the contact is updated in place
    contact.refresh_from_db()
    assert (report.created, report.updated) == (0, 1)
    assert (contact.first_name, contact.city, contact.phone) == ("Ann", "York", "1")
    assert contact.account == account
    assert contact.updated_at == NOW


@pytest.mark.django_db
def test_invalid_and_repeated_emails_are_reported(tmp_path):
    """An invalid email and a later repeat of an address are row errors; the
    first row for an address wins and name-only rows are kept."""
    path = tmp_path / "contacts.csv"
    path.write_text(
        "name,surname,mail\n"
        "Bo,Ng,bo@example.com\n"
        "Cy,Ot,not-an-email\n"
        "Bo,Second,BO@example.com\n"
        "Di,Pa,\n"
    )
    mapping = {"name": "first_name", "surname": "last_name", "mail": "email"}

    report = import_contacts(path, mapping, now=NOW)

    assert [(e.row_number, e.field) for e in report.errors] == [
        (3, "mail"),
        (4, "mail"),
    ]
    assert report.created == 2
    assert Contact.objects.get(email="bo@example.com").last_name == "Ng"
    assert Contact.objects.filter(email="", first_name="Di").count() == 1

    # A re-run matches the email-less person by name instead of duplicating.
    again = import_contacts(path, mapping, now=NOW)
    assert (again.created, again.unchanged) == (0, 2)


def test_unknown_mapping_target_is_refused(tmp_path):
    """A mapping to a field contacts do not have fails before reading rows."""
    with pytest.raises(ImportMappingError, match="fit_score"):
        import_contacts(tmp_path / "x.csv", {"score": "fit_score"}, now=NOW)


@pytest.mark.django_db
def test_query_count_does_not_grow_with_rows(tmp_path, django_assert_max_num_queries):
    """Importing 300 people runs the same lookups as importing 3."""

    def write(name, count):
        path = tmp_path / name
        lines = ["email,first,company"]
        lines += [f"{name}{n}@example.com,P{n},{name} {n}" for n in range(count)]
        path.write_text("\n".join(lines) + "\n")
        return path

    mapping = {"email": "email", "first": "first_name", "company": "account"}
    with CaptureQueriesContext(connection) as small_run:
        import_contacts(write("small.csv", 3), mapping, now=NOW)
    with django_assert_max_num_queries(30) as large_run:
        import_contacts(write("large.csv", 300), mapping, now=NOW)

    def lookups(queries):
        return [q for q in queries if not q["sql"].startswith("INSERT")]

    assert len(lookups(large_run.captured_queries)) == len(
        lookups(small_run.captured_queries)
    )
    assert Contact.objects.count() == 303


@pytest.mark.django_db
def test_command_takes_mapping_as_json_or_file(tmp_path, capsys):
    """--mapping accepts inline JSON or a JSON file and prints the counts."""
    path = tmp_path / "people.csv"
    path.write_text("mail,who,city\nx@example.com,Xi,Oslo\n,,Paris\n")
    mapping = {"mail": "email", "who": "first_name"}
    mapping_file = tmp_path / "mapping.json"
    mapping_file.write_text(json.dumps(mapping))

    call_command("import_contacts", str(path), mapping=json.dumps(mapping))
    call_command("import_contacts", str(path), mapping=str(mapping_file))

    out = capsys.readouterr().out
    assert "created 1, updated 0, unchanged 0, errors 1" in out
    assert "created 0, updated 0, unchanged 1, errors 1" in out
    assert "row 3: mail:" in out
