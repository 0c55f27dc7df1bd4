"""Importing the sales team (sales_teams.csv) and companies (accounts.csv)."""

import csv
import datetime as dt
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import CommandError

from crm.importers import import_accounts, import_reps
from crm.models import Account, Rep

NOW = dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC)
TEAMS = "kisaraF__CRM-Sales_Analysis/sales_teams.csv"
ACCOUNTS = "kisaraF__CRM-Sales_Analysis/accounts.csv"


@pytest.mark.django_db
def test_reps_and_managers_get_users_reps_regions_and_groups(shared_data):
    """Each agent is a staff user with a Rep in their region reporting to
    their manager's Rep; managers get a Rep too, in their team's region."""
    report = import_reps(shared_data / TEAMS)

    assert report.errors == []
    assert report.created == 35 + 6
    assert Rep.objects.filter(manager__isnull=False).count() == 35
    assert Rep.objects.filter(manager__isnull=True).count() == 6

    anna = Rep.objects.select_related("user", "manager__user").get(
        user__username="anna-snelling"
    )
    assert (anna.user.first_name, anna.user.last_name) == ("Anna", "Snelling")
    assert anna.user.is_staff
    assert not anna.user.has_usable_password()
    assert anna.region == "Central"
    assert anna.manager.user.username == "dustin-brinkmann"
    assert anna.manager.region == "Central"
    assert anna.manager.manager is None
    assert anna.manager.reports.count() == 5
    assert list(anna.user.groups.values_list("name", flat=True)) == ["Sales reps"]
    assert list(anna.manager.user.groups.values_list("name", flat=True)) == [
        "Sales managers"
    ]
    assert Rep.objects.get(user__username="mei-mei-johns").region == "Central"
    assert Rep.objects.get(user__username="celia-rouche").region == "West"


@pytest.mark.django_db
def test_rep_import_twice_changes_nothing(shared_data):
    """A second run finds everyone unchanged and keeps a set password."""
    # given the team imported and one rep given a password
    import_reps(shared_data / TEAMS)
    anna = get_user_model().objects.get(username="anna-snelling")
    anna.set_password("s3cret-pass")
    anna.save()

    # when the file is imported again
    report = import_reps(shared_data / TEAMS)

    # then nothing was created or changed
    assert (report.created, report.updated, report.unchanged) == (0, 0, 41)
    assert get_user_model().objects.count() == 41
    assert Rep.objects.count() == 41
    anna.refresh_from_db()
    assert anna.check_password("s3cret-pass")


@pytest.mark.django_db
def test_rep_import_moves_a_rep_to_a_new_manager(tmp_path):
    """When the file gives a rep another manager and region, the Rep follows."""
    # given a rep under one manager
    path = tmp_path / "teams.csv"
    path.write_text(
        "sales_agent,manager,regional_office\r\nAl Bo,Cy Di,East\r\n"
        "Ed Fu,Gi Ha,West\r\n"
    )
    import_reps(path)

    # when the file moves her
    path.write_text(
        "sales_agent,manager,regional_office\r\nAl Bo,Gi Ha,West\r\n"
        "Ed Fu,Gi Ha,West\r\n,Gi Ha,West\r\n"
    )
    report = import_reps(path)

    # then she reports to the new manager in the new region
    al = Rep.objects.get(user__username="al-bo")
    assert al.manager.user.username == "gi-ha"
    assert al.region == "West"
    assert report.updated == 1
    assert [(e.row_number, e.field) for e in report.errors] == [(4, "sales_agent")]


@pytest.mark.django_db
def test_accounts_land_with_fixed_industry_and_resolved_parents(shared_data):
    """Every row is an account; `technolgy` reads `technology`; subsidiaries
    point at their parent even when the parent comes later in the file."""
    with open(shared_data / ACCOUNTS, encoding="utf-8-sig", newline="") as handle:
        rows = list(csv.DictReader(handle))
    with_parent = sum(bool(r["subsidiary_of"]) for r in rows)

    report = import_accounts(shared_data / ACCOUNTS, now=NOW)

    assert report.errors == []
    assert report.created == len(rows) == 85
    assert Account.objects.count() == 85
    assert not Account.objects.filter(industry="technolgy").exists()
    assert Account.objects.filter(industry="technology").count() == sum(
        r["sector"] == "technolgy" for r in rows
    )
    assert Account.objects.filter(parent__isnull=False).count() == with_parent

    cheers = Account.objects.select_related("parent").get(name="Cheers")
    assert cheers.parent.name == "Massive Dynamic"
    assert cheers.annual_revenue == Decimal("4269.90")
    assert cheers.employee_count == 6472
    assert cheers.year_established == 1993
    assert Account.objects.get(name="Bioholding").country == "Philippines"
    assert Account.objects.get(name="Acme Corporation").subsidiaries.count() == 4


@pytest.mark.django_db
def test_account_import_twice_changes_nothing(shared_data):
    """A second run counts every account unchanged and touches no row."""
    # given the accounts imported once
    import_accounts(shared_data / ACCOUNTS, now=NOW)
    stamps = dict(Account.objects.values_list("name", "updated_at"))

    # when imported again later
    report = import_accounts(shared_data / ACCOUNTS, now=NOW + dt.timedelta(days=1))

    # then nothing changed
    assert (report.created, report.updated, report.unchanged) == (0, 0, 85)
    assert dict(Account.objects.values_list("name", "updated_at")) == stamps


@pytest.mark.django_db
def test_bad_account_rows_are_reported_and_good_ones_land(shared_data, tmp_path):
    """A bad number or an unknown parent is reported on its line and column."""
    lines = (shared_data / ACCOUNTS).read_text(encoding="utf-8").splitlines()
    lines[2] = lines[2].replace("251.41", "n/a")  # Betasoloin
    lines[3] = lines[3].replace("1185", "12x")  # Betatech
    lines[4] = lines[4] + "Nobody Inc"  # Bioholding
    path = tmp_path / "accounts.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")

    report = import_accounts(path, now=NOW)

    assert [(e.row_number, e.field) for e in report.errors] == [
        (3, "revenue"),
        (4, "employees"),
        (5, "subsidiary_of"),
    ]
    assert Account.objects.count() == 83
    assert not Account.objects.filter(name__in=["Betasoloin", "Betatech"]).exists()
    assert Account.objects.get(name="Bioholding").parent is None


@pytest.mark.django_db
def test_commands_read_the_data_dir_by_default_and_fail_on_unreadable_files(
    shared_data, settings, tmp_path, capsys
):
    """With no path the command imports the bundled file and prints counts
    and time; a file that cannot be read is a command error."""
    settings.CRM_DATA_DIR = str(shared_data)

    call_command("import_reps")
    with pytest.raises(CommandError, match="cannot read"):
        call_command("import_accounts", str(tmp_path / "missing.csv"))

    out = capsys.readouterr().out
    assert "sales_teams.csv: created 41, updated 0, unchanged 0, errors 0" in out
    assert "took " in out
