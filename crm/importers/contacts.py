"""Import people from any contact CSV, given which column feeds which field.

A mapping names, for each CSV column, a contact field, ``attributes.<key>``
for free-form data, ``account`` for the company name (the account is made
when missing) or ``account.domain`` for the company's website.
"""

import dataclasses
import datetime as dt
import logging
import os
import time

from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import transaction
from django.db.models import Q
from django.db.models.functions import Lower

from crm.models import Account, Contact, normalise_domain, normalise_email

from .base import (
    DEFAULT_BATCH_SIZE,
    BadValue,
    ImportReport,
    Row,
    apply_values,
    batched,
    read_rows,
    update_changed,
)

logger = logging.getLogger(__name__)

# Suited to mautic's fakeleaddata.csv. Its "title" is a salutation (Mr.,
# Dr.), not a job title, so it goes to attributes; the IP address is left
# out on purpose.
DEFAULT_CONTACT_MAPPING = {
    "title": "attributes.salutation",
    "firstname": "first_name",
    "lastname": "last_name",
    "email": "email",
    "phone": "phone",
    "city": "city",
    "country": "country",
    "company": "account",
    "website": "account.domain",
    "address1": "attributes.address",
    "state": "attributes.state",
    "zipcode": "attributes.postal_code",
    "facebook": "attributes.facebook",
    "twitter": "attributes.twitter",
    "points": "attributes.points",
}

CONTACT_FIELDS = frozenset(
    {
        "first_name",
        "last_name",
        "email",
        "phone",
        "title",
        "linkedin_url",
        "city",
        "country",
        "time_zone",
        "lead_source",
        "lead_origin",
        "occupation",
        "specialization",
    }
)
ACCOUNT, DOMAIN, ATTRIBUTE = "account", "account.domain", "attributes."


class ImportMappingError(ValueError):
    """A column mapping names a target the import does not know."""


@dataclasses.dataclass
class Person:
    """One parsed row: contact values, free-form attributes, the company."""

    row_number: int
    fields: dict
    attributes: dict
    account_name: str
    domain: str

    @property
    def email(self) -> str:
        return self.fields.get("email", "")

    @property
    def key(self) -> tuple:
        """What identifies this person: the email, else the folded name."""
        if self.email:
            return ("email", self.email)
        return (
            "name",
            self.fields.get("first_name", "").casefold(),
            self.fields.get("last_name", "").casefold(),
        )


def import_contacts(
    path: str | os.PathLike,
    mapping: dict[str, str] | None = None,
    *,
    now: dt.datetime,
    source: str = "csv",
    batch_size: int | None = None,
) -> ImportReport:
    """Create or update contacts from a CSV file using a column mapping.

    People are matched by case-folded email, or by name among contacts with
    no email. A row with no email and no name, or an invalid email, is
    reported; when an email repeats in the file the first row wins. New
    contacts get ``source`` as lead source unless the mapping supplies one.
    Blank cells never erase what a contact already has.
    """
    started = time.monotonic()
    mapping = mapping or DEFAULT_CONTACT_MAPPING
    check_mapping(mapping)
    report = ImportReport()
    rows = read_rows(path, required=list(mapping), report=report)

    people, first_row = [], {}
    for row in rows:
        try:
            person = parse_person(row, mapping)
        except BadValue as exc:
            report.add_error(row.number, exc.field, exc.reason)
            continue
        if person.key in first_row:
            report.add_error(
                row.number,
                column_for(mapping, "email"),
                f"repeats the person on row {first_row[person.key]}",
            )
            continue
        first_row[person.key] = row.number
        people.append(person)

    for batch in batched(people, batch_size or DEFAULT_BATCH_SIZE):
        save_people(batch, report, now=now, source=source)

    report.seconds = time.monotonic() - started
    logger.info("Imported contacts: %s", report.summary())
    return report


def check_mapping(mapping: dict[str, str]) -> None:
    """Raise ImportMappingError unless every target is one we can fill."""
    for column, target in mapping.items():
        known = target in CONTACT_FIELDS or target in (ACCOUNT, DOMAIN)
        if not known and not (target.startswith(ATTRIBUTE) and target[11:]):
            raise ImportMappingError(
                f"column {column!r} maps to {target!r}, which is not a contact "
                f"field, {ACCOUNT!r}, {DOMAIN!r} or 'attributes.<key>'"
            )


def column_for(mapping: dict[str, str], target: str) -> str:
    """Name the CSV column that feeds ``target``, for error messages."""
    return next((col for col, t in mapping.items() if t == target), target)


def parse_person(row: Row, mapping: dict[str, str]) -> Person:
    """Turn one row into a Person, or raise BadValue naming the column."""
    person = Person(row.number, {}, {}, "", "")
    for column, target in mapping.items():
        value = row.get(column)
        if target.startswith(ATTRIBUTE):
            if value:
                person.attributes[target[len(ATTRIBUTE) :]] = value
        elif target == ACCOUNT:
            person.account_name = value
        elif target == DOMAIN:
            person.domain = normalise_domain(value)
        else:
            limit = Contact._meta.get_field(target).max_length
            if limit and len(value) > limit:
                raise BadValue(column, f"is longer than {limit} characters")
            person.fields[target] = value

    email_column = column_for(mapping, "email")
    if person.email:
        person.fields["email"] = normalise_email(person.email)
        try:
            validate_email(person.email)
        except ValidationError:
            raise BadValue(email_column, "is not a valid email address") from None
    if not person.email and not (
        person.fields.get("first_name") or person.fields.get("last_name")
    ):
        raise BadValue(email_column, "is blank and the row has no name either")
    return person


def save_people(
    batch: list[Person], report: ImportReport, *, now: dt.datetime, source: str
):
    """Save one batch of people and their accounts with a fixed query count."""
    with transaction.atomic():
        accounts = ensure_accounts(batch, report)
        existing = find_contacts(batch)

        new, changes = [], []
        for person in batch:
            account = accounts.get(person.account_name.casefold())
            contact = existing.get(person.key)
            if contact is None:
                new.append(new_contact(person, account, source=source))
                continue
            changed = merge_person(contact, person, account)
            if changed:
                changes.append((contact, changed))
            else:
                report.unchanged += 1
        Contact.objects.bulk_create(new)
        report.created += len(new)
        report.updated += update_changed(Contact, changes, now=now)


def find_contacts(batch: list[Person]) -> dict[tuple, Contact]:
    """Load the contacts the batch's people already are, keyed like Person.key."""
    emails = [person.email for person in batch if person.email]
    first_names = {person.key[1] for person in batch if not person.email}
    last_names = {person.key[2] for person in batch if not person.email}
    query = Q(email__in=emails)
    if last_names:
        query |= Q(email="", lfirst__in=first_names, llast__in=last_names)
    found = {}
    contacts = Contact.objects.annotate(
        lfirst=Lower("first_name"), llast=Lower("last_name")
    ).filter(query)
    for contact in contacts:
        if contact.email:
            found[("email", contact.email)] = contact
        else:
            found.setdefault(("name", contact.lfirst, contact.llast), contact)
    return found


def ensure_accounts(batch: list[Person], report: ImportReport) -> dict[str, Account]:
    """Return the batch's accounts by folded name, creating the missing ones.

    A new account takes the first website given for it, unless another
    account already has that domain.
    """
    names = {p.account_name.casefold() for p in batch if p.account_name}
    if not names:
        return {}
    domains = {p.domain for p in batch if p.account_name and p.domain}
    accounts, taken = {}, set()
    for account in Account.objects.annotate(lname=Lower("name")).filter(
        Q(lname__in=names) | Q(domain__in=domains)
    ):
        if account.lname in names:
            accounts[account.lname] = account
        taken.add(account.domain)

    new = []
    for person in batch:
        key = person.account_name.casefold()
        if not key or key in accounts:
            continue
        domain = person.domain if person.domain not in taken else ""
        taken.add(domain)
        accounts[key] = Account(name=person.account_name, domain=domain)
        new.append(accounts[key])
    Account.objects.bulk_create(new)
    report.count("accounts_created", len(new))
    return accounts


def new_contact(person: Person, account: Account | None, *, source: str) -> Contact:
    fields = {
        **person.fields,
        "lead_source": person.fields.get("lead_source") or source,
    }
    return Contact(account=account, attributes=person.attributes, **fields)


def merge_person(contact: Contact, person: Person, account: Account | None):
    """Copy the row's non-blank values onto a contact; return what changed."""
    values = {name: value for name, value in person.fields.items() if value}
    if person.attributes:
        values["attributes"] = {**contact.attributes, **person.attributes}
    if account is not None:
        values["account_id"] = account.pk
    return apply_values(contact, values)
