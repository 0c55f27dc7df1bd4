"""Import companies (accounts.csv) with their parent companies."""

import datetime as dt
import logging
import os
import time

from django.db import transaction
from django.db.models.functions import Lower
from django.utils import timezone

from crm.models import Account

from .base import (
    BadValue,
    ImportReport,
    Row,
    apply_values,
    parse_decimal,
    parse_int,
    read_rows,
    update_changed,
)

logger = logging.getLogger(__name__)

NAME, PARENT = "account", "subsidiary_of"
REQUIRED_COLUMNS = (
    NAME,
    "sector",
    "year_established",
    "revenue",
    "employees",
    "office_location",
    PARENT,
)

# Misspellings found in the export, by their case-folded form.
INDUSTRY_FIXES = {"technolgy": "technology"}
COUNTRY_FIXES = {"philipines": "Philippines"}

# Account.annual_revenue holds 14 digits before the decimal point.
MAX_REVENUE = 10**14


def import_accounts(
    path: str | os.PathLike, *, now: dt.datetime | None = None
) -> ImportReport:
    """Create or update one account per row, then link each to its parent.

    Accounts are matched by case-folded name. Parents are resolved after all
    rows are saved, so a subsidiary may come before its parent in the file;
    a parent that names no account is reported on the subsidiary's row.
    """
    now = now or timezone.now()
    started = time.monotonic()
    report = ImportReport()
    rows = read_rows(path, required=REQUIRED_COLUMNS, report=report)

    parsed, first_row = [], {}
    for row in rows:
        try:
            values = parse_account(row)
        except BadValue as exc:
            report.add_error(row.number, exc.field, exc.reason)
            continue
        key = values["name"].casefold()
        if key in first_row:
            report.add_error(
                row.number, NAME, f"repeats the account on row {first_row[key]}"
            )
            continue
        first_row[key] = row.number
        parsed.append((row, values))

    with transaction.atomic():
        accounts, created, changed = save_accounts(parsed, now=now)
        parent_changed = link_parents(parsed, accounts, report, now=now)

    for _row, values in parsed:
        key = values["name"].casefold()
        if key in created:
            report.created += 1
        elif key in changed or key in parent_changed:
            report.updated += 1
        else:
            report.unchanged += 1
    report.seconds = time.monotonic() - started
    logger.info("Imported accounts: %s", report.summary())
    return report


def parse_account(row: Row) -> dict:
    """Turn one row into account values, or raise BadValue."""
    name = row.get(NAME)
    if not name:
        raise BadValue(NAME, "is missing")
    industry = row.get("sector").casefold()
    country = row.get("office_location")
    year = parse_int(row, "year_established", minimum=1000)
    if year is not None and year > 9999:
        raise BadValue("year_established", f"{year} is not a year")
    revenue = parse_decimal(row, "revenue")
    if revenue is not None and revenue >= MAX_REVENUE:
        raise BadValue("revenue", f"{revenue} is too large")
    return {
        "name": name,
        "industry": INDUSTRY_FIXES.get(industry, industry),
        "country": COUNTRY_FIXES.get(country.casefold(), country),
        "year_established": year,
        "annual_revenue": None if revenue is None else round(revenue, 2),
        "employee_count": parse_int(row, "employees"),
    }


def save_accounts(parsed: list, *, now: dt.datetime) -> tuple[dict, set, set]:
    """Save the rows' accounts; return them by folded name, created, changed."""
    names = [values["name"].casefold() for _, values in parsed]
    accounts = {
        account.lname: account
        for account in Account.objects.annotate(lname=Lower("name")).filter(
            lname__in=names
        )
    }

    new, changes = [], []
    for _, values in parsed:
        key = values["name"].casefold()
        account = accounts.get(key)
        if account is None:
            accounts[key] = Account(**values)
            new.append(accounts[key])
        else:
            changes.append((account, apply_values(account, values)))
    Account.objects.bulk_create(new)
    update_changed(Account, changes, now=now)

    created = {account.name.casefold() for account in new}
    changed = {account.name.casefold() for account, names in changes if names}
    return accounts, created, changed


def link_parents(
    parsed: list, accounts: dict, report: ImportReport, *, now: dt.datetime
) -> set:
    """Point each account at its parent; return the names whose parent changed."""
    parent_names = [row.get(PARENT).casefold() for row, _ in parsed]
    missing = {name for name in parent_names if name and name not in accounts}
    if missing:
        # Parents that exist already but are not in this file.
        for account in Account.objects.annotate(lname=Lower("name")).filter(
            lname__in=missing
        ):
            accounts[account.lname] = account

    changes = []
    for row, values in parsed:
        account = accounts[values["name"].casefold()]
        parent_name = row.get(PARENT)
        parent = accounts.get(parent_name.casefold()) if parent_name else None
        if parent_name and parent is None:
            report.add_error(row.number, PARENT, f"no account named {parent_name!r}")
            continue
        if parent is not None and parent.pk == account.pk:
            report.add_error(row.number, PARENT, "an account cannot own itself")
            continue
        changes.append(
            (account, apply_values(account, {"parent_id": parent and parent.pk}))
        )
    update_changed(Account, changes, now=now)
    return {account.name.casefold() for account, names in changes if names}
