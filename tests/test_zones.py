"""Zone resolution: contact, then account, then country, then the default."""

import csv
import datetime as dt

import pytest

from nurture.services.zones import (
    country_code,
    is_holiday,
    public_holidays,
    resolve_zone,
)
from tests.factories import AccountFactory, ContactFactory

pytestmark = pytest.mark.django_db


def test_the_contacts_own_zone_wins():
    """A contact's own zone beats its account's and its country's."""
    account = AccountFactory(time_zone="Europe/Berlin")
    contact = ContactFactory(time_zone="Asia/Dubai", account=account)

    assert resolve_zone(contact).label == "Asia/Dubai (contact)"


def test_the_account_zone_comes_before_the_country():
    """Without a zone of its own, a contact lives by its account's."""
    account = AccountFactory(time_zone="Europe/Berlin")
    contact = ContactFactory(account=account, country="India")

    assert resolve_zone(contact).label == "Europe/Berlin (account)"


def test_a_country_name_or_code_gives_its_zone():
    """India by name and AU by code map to their (most populous) zones."""
    assert resolve_zone(ContactFactory(country="India")).label == (
        "Asia/Kolkata (country)"
    )
    assert resolve_zone(ContactFactory(country="AU")).label == (
        "Australia/Sydney (country)"
    )


def test_an_unknown_zone_falls_through_to_the_next_source():
    """A misspelt zone is ignored rather than trusted or fatal."""
    contact = ContactFactory(time_zone="Mars/Olympus_Mons", country="Kenya")

    assert resolve_zone(contact).label == "Africa/Nairobi (country)"


def test_nothing_known_means_the_configured_default(settings):
    """No zone, account or known country: NURTURE_DEFAULT_TIME_ZONE."""
    settings.NURTURE_DEFAULT_TIME_ZONE = "Asia/Singapore"
    contact = ContactFactory(country="Atlantis")

    assert resolve_zone(contact).label == "Asia/Singapore (default)"


def test_every_country_in_the_real_leads_has_a_zone(shared_data):
    """Each real country name in Leads.csv resolves, bar placeholders."""
    path = shared_data / "GnyaneshKanchetti2002__XEducation-LeadScoringCaseStudy"
    with open(path / "Leads.csv", encoding="utf-8-sig", newline="") as handle:
        countries = {row["Country"] for row in csv.DictReader(handle)}
    placeholders = {"", "unknown", "Asia/Pacific Region"}

    missing = sorted(c for c in countries - placeholders if not country_code(c))

    assert missing == []


def test_holidays_come_from_the_holidays_package_and_are_cached():
    """India's Republic Day is a holiday; the calendar is built once a year."""
    public_holidays.cache_clear()
    republic_day = dt.date(2025, 1, 26)

    assert is_holiday("IN", republic_day)
    assert is_holiday("IN", republic_day.replace(day=25)) is False
    assert not is_holiday("", republic_day)
    assert public_holidays.cache_info().misses == 1
