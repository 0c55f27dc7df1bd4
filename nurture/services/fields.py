"""Read a contact's value for a rule's field name, as rules spell it."""

import functools
from collections.abc import Callable
from typing import Any

from crm.models import Contact

# Never readable by a rule: the outcome the source system recorded is held
# out so scores and routing cannot peek at it.
HIDDEN_FIELDS = frozenset({"known_converted"})


def contact_field_value(contact: Contact, field: str) -> Any:
    """Return the value a rule's ``field`` names for this contact.

    ``attributes.<key>`` reads the contact's free-form attributes,
    ``account__<field>`` the contact's account, anything else a contact
    attribute. Unknown names and a missing account read as None.
    """
    return field_getter(field)(contact)


@functools.cache
def field_getter(field: str) -> Callable[[Any], Any]:
    """Return a function reading ``field`` as contact_field_value does.

    Parsing the name once matters when thousands of contacts are read.
    """
    if field.startswith("attributes."):
        key = field.removeprefix("attributes.")

        def attribute(contact):
            return (contact.attributes or {}).get(key)

        return attribute
    if field.startswith("account__"):
        name = field.removeprefix("account__")
        if _hidden(name):
            return _nothing

        def of_account(contact):
            if contact.account_id is None:
                return None
            return getattr(contact.account, name, None)

        return of_account
    if _hidden(field):
        return _nothing

    def plain(contact):
        return getattr(contact, field, None)

    return plain


def _hidden(name: str) -> bool:
    return name in HIDDEN_FIELDS or name.startswith("_")


def _nothing(contact) -> None:
    return None


def as_text(value: Any) -> str:
    """Fold a value to the trimmed lower-case text rules compare against."""
    if value is None:
        return ""
    return str(value).strip().casefold()
