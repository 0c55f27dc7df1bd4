"""Who must not get automated email, checked at the moment of sending.

The dispatcher asks these questions of contacts it has already loaded, so
they cost no queries. Scheduling may have happened days earlier: a contact
who unsubscribed, bounced or complained since then is caught here.
"""

from crm.models import Contact
from nurture.models import Enrollment

from .zones import contact_country_code

# Where marketing email needs the contact's explicit opt-in: the EU and
# EEA member states, plus the United Kingdom (its GDPR and PECR).
OPT_IN_COUNTRIES = frozenset(
    {
        *("AT", "BE", "BG", "HR", "CY", "CZ", "DK", "EE", "FI", "FR", "DE"),
        *("GR", "HU", "IE", "IT", "LV", "LT", "LU", "MT", "NL", "PL", "PT"),
        *("RO", "SK", "SI", "ES", "SE"),
        *("IS", "LI", "NO"),
        "GB",
    }
)


def email_suppression(contact: Contact) -> str:
    """Return why a contact must get no automated email now, or ""."""
    if contact.do_not_contact:
        return "do not contact"
    if contact.unsubscribed_at is not None:
        return "unsubscribed"
    if contact.complained_at is not None:
        return "complained"
    if contact.hard_bounced_at is not None:
        return "hard bounced"
    if contact.do_not_email:
        return "do not email"
    if not contact.email:
        return "no email address"
    return consent_missing(contact)


def consent_missing(contact: Contact) -> str:
    """Return why the contact's region forbids emailing it, or "".

    Contacts in opt-in countries (by the contact's country, else its
    account's) need consent_basis "opt_in"; elsewhere anything short of an
    explicit opt-out will do, and opt-outs are caught before this.
    """
    code = contact_country_code(contact)
    if code in OPT_IN_COUNTRIES and contact.consent_basis != (
        Contact.ConsentBasis.OPT_IN
    ):
        return f"no opt-in consent ({code} requires it)"
    return ""


def exit_reason(contact: Contact) -> str:
    """Return why a contact must leave every cadence now, or ""."""
    if contact.do_not_contact:
        return Enrollment.ExitReason.DO_NOT_CONTACT
    if contact.unsubscribed_at is not None:
        return Enrollment.ExitReason.UNSUBSCRIBED
    if contact.complained_at is not None:
        return Enrollment.ExitReason.COMPLAINED
    return ""
