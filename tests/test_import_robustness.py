"""Malformed CSV files: each bad row is reported alone and the rest lands."""

import datetime as dt

import pytest

from crm.importers import import_leads, import_reps
from crm.models import Contact, Rep

pytestmark = pytest.mark.django_db

NOW = dt.datetime(2025, 3, 3, 9, 0, tzinfo=dt.UTC)
LEADS = "GnyaneshKanchetti2002__XEducation-LeadScoringCaseStudy/Leads.csv"


def real_lines(shared_data, count: int) -> list[bytes]:
    """The header and the first rows of the real lead export, as bytes."""
    lines = (shared_data / LEADS).read_bytes().splitlines(keepends=True)
    return lines[: count + 1]


def test_a_row_with_too_few_cells_is_reported_not_imported(shared_data, tmp_path):
    """A truncated row is refused with its line number; full rows land."""
    lines = real_lines(shared_data, 3)
    lines.insert(2, b"short,row\r\n")
    path = tmp_path / "leads.csv"
    path.write_bytes(b"".join(lines))

    report = import_leads(path, now=NOW)

    assert report.created == 3
    assert [(e.row_number, e.field) for e in report.errors] == [(3, "(row)")]
    assert "2 cells" in report.errors[0].reason
    assert not Contact.objects.filter(external_id="xedu:short").exists()


def test_a_row_that_is_not_utf8_is_reported_alone(shared_data, tmp_path):
    """One Latin-1 byte costs only its row, named with its column."""
    lines = real_lines(shared_data, 3)
    lines[2] = lines[2].replace(b"API,", "Caf\u00e9,".encode("latin-1"), 1)
    path = tmp_path / "leads.csv"
    path.write_bytes(b"".join(lines))

    report = import_leads(path, now=NOW)

    assert report.created == 2
    assert len(report.errors) == 1
    assert report.errors[0].row_number == 3
    assert report.errors[0].field == "Lead Origin"
    assert "UTF-8" in report.errors[0].reason


def test_a_utf16_file_imports_like_utf8(shared_data, tmp_path):
    """Spreadsheets that save UTF-16 with a byte-order mark are understood."""
    text = b"".join(real_lines(shared_data, 4)).decode("utf-8")
    path = tmp_path / "leads.csv"
    path.write_bytes(text.encode("utf-16"))

    report = import_leads(path, now=NOW)

    assert (report.created, report.errors) == (4, [])


def test_an_absurdly_large_number_is_a_row_error(shared_data, tmp_path):
    lines = real_lines(shared_data, 2)
    cells = lines[1].decode().split(",")
    cells[7] = "1e999"  # TotalVisits
    lines[1] = ",".join(cells).encode()
    path = tmp_path / "leads.csv"
    path.write_bytes(b"".join(lines))

    report = import_leads(path, now=NOW)

    assert report.created == 1
    assert [(e.row_number, e.field) for e in report.errors] == [(2, "TotalVisits")]
    assert "too large" in report.errors[0].reason


def test_a_row_with_an_extra_cell_is_reported(tmp_path):
    path = tmp_path / "teams.csv"
    path.write_text(
        "sales_agent,manager,regional_office\n"
        "Ann Lee,Max Moe,West\n"
        "Bob Roe,Max Moe,West,surprise\n"
    )

    report = import_reps(path)

    assert Rep.objects.filter(user__first_name="Ann").exists()
    assert not Rep.objects.filter(user__first_name="Bob").exists()
    assert [(e.row_number, e.field) for e in report.errors] == [(3, "(row)")]
