"""Read a contact's value for a rule's field name, as rules spell it."""

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
    if field.startswith("attributes."):
        return (contact.attributes or {}).get(field.removeprefix("attributes."))
    if field.startswith("account__"):
        if contact.account_id is None:
            return None
        return _plain_attribute(contact.account, field.removeprefix("account__"))
    return _plain_attribute(contact, field)


def _plain_attribute(instance, name: str) -> Any:
    if name in HIDDEN_FIELDS or name.startswith("_"):
        return None
    return getattr(instance, name, None)


def as_text(value: Any) -> str:
    """Fold a value to the trimmed lower-case text rules compare against."""
    if value is None:
        return ""
    return str(value).strip().casefold()
