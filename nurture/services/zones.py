"""Which time zone and holiday calendar a contact lives by.

A contact's zone comes from the first of these that names a real zone:
the contact's own ``time_zone``, its account's, its country's (from the
table below), then NURTURE_DEFAULT_TIME_ZONE. The dispatcher records which
one it used on each touch, so the admin can say why an email went out when
it did.
"""

import datetime as dt
import functools
import logging
import zoneinfo
from dataclasses import dataclass

import holidays

from crm.models import Contact
from nurture import conf

logger = logging.getLogger(__name__)

# Country name (lower case) -> (ISO 3166 code, IANA zone). It covers every
# country in the real lead exports and the usual aliases. A country that
# spans several zones gets the zone where most of its people live:
# United States -> New York (Eastern), Canada -> Toronto (Eastern),
# Australia -> Sydney (Eastern), Russia -> Moscow, Brazil -> Sao Paulo,
# Indonesia -> Jakarta, Mexico -> Mexico City, Kazakhstan -> Almaty.
COUNTRIES: dict[str, tuple[str, str]] = {
    "india": ("IN", "Asia/Kolkata"),
    "united states": ("US", "America/New_York"),
    "united states of america": ("US", "America/New_York"),
    "usa": ("US", "America/New_York"),
    "united kingdom": ("GB", "Europe/London"),
    "uk": ("GB", "Europe/London"),
    "great britain": ("GB", "Europe/London"),
    "england": ("GB", "Europe/London"),
    "united arab emirates": ("AE", "Asia/Dubai"),
    "uae": ("AE", "Asia/Dubai"),
    "singapore": ("SG", "Asia/Singapore"),
    "saudi arabia": ("SA", "Asia/Riyadh"),
    "australia": ("AU", "Australia/Sydney"),
    "qatar": ("QA", "Asia/Qatar"),
    "bahrain": ("BH", "Asia/Bahrain"),
    "hong kong": ("HK", "Asia/Hong_Kong"),
    "oman": ("OM", "Asia/Muscat"),
    "kuwait": ("KW", "Asia/Kuwait"),
    "canada": ("CA", "America/Toronto"),
    "south africa": ("ZA", "Africa/Johannesburg"),
    "nigeria": ("NG", "Africa/Lagos"),
    "ghana": ("GH", "Africa/Accra"),
    "kenya": ("KE", "Africa/Nairobi"),
    "uganda": ("UG", "Africa/Kampala"),
    "tanzania": ("TZ", "Africa/Dar_es_Salaam"),
    "liberia": ("LR", "Africa/Monrovia"),
    "germany": ("DE", "Europe/Berlin"),
    "france": ("FR", "Europe/Paris"),
    "sweden": ("SE", "Europe/Stockholm"),
    "belgium": ("BE", "Europe/Brussels"),
    "netherlands": ("NL", "Europe/Amsterdam"),
    "italy": ("IT", "Europe/Rome"),
    "spain": ("ES", "Europe/Madrid"),
    "ireland": ("IE", "Europe/Dublin"),
    "denmark": ("DK", "Europe/Copenhagen"),
    "switzerland": ("CH", "Europe/Zurich"),
    "russia": ("RU", "Europe/Moscow"),
    "china": ("CN", "Asia/Shanghai"),
    "philippines": ("PH", "Asia/Manila"),
    "bangladesh": ("BD", "Asia/Dhaka"),
    "sri lanka": ("LK", "Asia/Colombo"),
    "malaysia": ("MY", "Asia/Kuala_Lumpur"),
    "vietnam": ("VN", "Asia/Ho_Chi_Minh"),
    "indonesia": ("ID", "Asia/Jakarta"),
    "nepal": ("NP", "Asia/Kathmandu"),
    "pakistan": ("PK", "Asia/Karachi"),
    "japan": ("JP", "Asia/Tokyo"),
    "brazil": ("BR", "America/Sao_Paulo"),
    "mexico": ("MX", "America/Mexico_City"),
    "new zealand": ("NZ", "Pacific/Auckland"),
    "kazakhstan": ("KZ", "Asia/Almaty"),
}
_BY_CODE = {code: (code, zone) for code, zone in COUNTRIES.values()}


@dataclass(frozen=True)
class ResolvedZone:
    """A contact's zone and where it came from."""

    zone: zoneinfo.ZoneInfo
    source: str  # "contact", "account", "country" or "default"

    @property
    def label(self) -> str:
        return f"{self.zone.key} ({self.source})"


def country_code(country: str) -> str:
    """Return the ISO code of a country name or code, or "" if unknown."""
    key = (country or "").strip()
    if len(key) == 2 and key.upper() in _BY_CODE:
        return key.upper()
    found = COUNTRIES.get(key.lower())
    return found[0] if found else ""


def contact_country_code(contact: Contact) -> str:
    """Return the ISO code of a contact's country, else its account's."""
    code = country_code(contact.country)
    if not code and contact.account_id is not None:
        code = country_code(contact.account.country)
    return code


def resolve_zone(contact: Contact) -> ResolvedZone:
    """Return the zone a contact's send window is read in, and its source.

    Load ``contact.account`` with the contact (select_related) when many
    contacts are resolved at once.
    """
    account = contact.account if contact.account_id is not None else None
    candidates = (
        (contact.time_zone, "contact"),
        (account.time_zone if account else "", "account"),
        (_country_zone(contact.country), "country"),
        (_country_zone(account.country) if account else "", "country"),
        (conf.get("NURTURE_DEFAULT_TIME_ZONE"), "default"),
    )
    for name, source in candidates:
        zone = zone_or_none(name)
        if zone is not None:
            return ResolvedZone(zone, source)
    return ResolvedZone(zoneinfo.ZoneInfo("UTC"), "default")


def _country_zone(country: str) -> str:
    key = (country or "").strip()
    found = _BY_CODE.get(key.upper()) if len(key) == 2 else COUNTRIES.get(key.lower())
    return found[1] if found else ""


@functools.lru_cache(maxsize=512)
def zone_or_none(name: str) -> zoneinfo.ZoneInfo | None:
    """Return the zone called ``name``, or None when there is no such zone."""
    if not name:
        return None
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        logger.warning("Unknown time zone %r; trying the next source", name)
        return None


@functools.lru_cache(maxsize=512)
def public_holidays(code: str, year: int) -> frozenset[dt.date]:
    """Return the public holidays of a country (ISO code) in a year, cached."""
    if not code:
        return frozenset()
    try:
        return frozenset(holidays.country_holidays(code, years=year))
    except NotImplementedError:
        logger.warning("No holiday calendar for country %s", code)
        return frozenset()


def is_holiday(code: str, day: dt.date) -> bool:
    """Return whether ``day`` is a public holiday in the country ``code``."""
    return bool(code) and day in public_holidays(code, day.year)
