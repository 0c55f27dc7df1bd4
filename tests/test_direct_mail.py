"""Direct mail: queued by the channel, exported once each for the print vendor."""

import csv
import datetime as dt
import io

import pytest
from django.core.management import call_command

from nurture.channels import Delivery, DirectMailChannel
from nurture.models import Channel, Touch
from nurture.services.direct_mail import export_direct_mail, postal_address
from tests.factories import AccountFactory, ContactFactory, StepFactory, TouchFactory

pytestmark = pytest.mark.django_db

NOW = dt.datetime(2025, 3, 3, 10, 0, tzinfo=dt.UTC)

ADDRESS = {"address1": "221B Baker Street", "zipcode": "NW1 6XE"}


def mail_touch(contact=None, status=Touch.Status.SENT):
    step = StepFactory(channel=Channel.DIRECT_MAIL)
    return TouchFactory(
        step=step,
        enrollment__cadence=step.cadence,
        enrollment__contact=contact
        or ContactFactory(city="London", country="United Kingdom", attributes=ADDRESS),
        status=status,
    )


def test_the_address_comes_from_contact_fields_and_attributes():
    """Street and postcode from imported attributes, city and country from fields."""
    contact = ContactFactory.build(
        city="London", country="United Kingdom", attributes=ADDRESS
    )

    assert postal_address(contact) == {
        "address_line1": "221B Baker Street", "address_line2": "",
        "postal_code": "NW1 6XE", "region": "", "city": "London",
        "country": "United Kingdom",
    }  # fmt: skip
    assert postal_address(ContactFactory.build(city="London", attributes={})) is None


def test_the_channel_queues_addressable_contacts_and_skips_the_rest():
    """With an address the touch waits for export; without one it is skipped."""
    ready = mail_touch(status=Touch.Status.SENDING)
    nowhere = mail_touch(ContactFactory(city=""), status=Touch.Status.SENDING)

    results = DirectMailChannel(now=NOW).send([ready, nowhere])

    assert results[ready.pk].status == Touch.Status.SENT
    assert results[nowhere.pk] == Delivery(Touch.Status.SKIPPED, "no postal address")


def test_an_export_writes_each_touch_once_and_stamps_it():
    """A second export finds nothing: every touch is printed once."""
    # Given two queued touches and one that is still sending
    contact = ContactFactory(
        first_name="Ada", last_name="Byron", city="London",
        country="United Kingdom", attributes=ADDRESS,
        account=AccountFactory(name="Initech"),
    )  # fmt: skip
    first = mail_touch(contact)
    second = mail_touch()
    mail_touch(status=Touch.Status.SENDING)

    # When exporting twice
    out = io.StringIO()
    count = export_direct_mail(out, now=NOW)
    again = export_direct_mail(io.StringIO(), now=NOW)

    # Then the first file holds both queued touches, the second none
    rows = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert (count, again) == (2, 0)
    assert [int(row["touch_id"]) for row in rows] == [first.pk, second.pk]
    assert rows[0] == {
        "touch_id": str(first.pk), "name": "Ada Byron", "company": "Initech",
        "address_line1": "221B Baker Street", "address_line2": "",
        "city": "London", "postal_code": "NW1 6XE", "region": "",
        "country": "United Kingdom",
    }  # fmt: skip
    first.refresh_from_db()
    assert first.exported_at == NOW


def test_the_export_reads_a_fixed_number_of_queries(django_assert_num_queries):
    """Reading and stamping the batch costs the same for 2 or 20 touches."""
    for _ in range(20):
        mail_touch()

    # One select and one update, inside a savepoint in the test transaction.
    with django_assert_num_queries(4):
        assert export_direct_mail(io.StringIO(), now=NOW) == 20


def test_the_command_writes_a_file(tmp_path):
    """export_direct_mail --output writes the CSV and reports the count."""
    mail_touch()
    target = tmp_path / "print.csv"
    out = io.StringIO()

    call_command("export_direct_mail", output=str(target), stdout=out)

    assert "Exported 1 direct mail touches" in out.getvalue()
    assert target.read_text().startswith("touch_id,name,company,")
