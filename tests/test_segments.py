"""Segments: saved contact filters in the contact API's filter language."""

import pytest

from nurture.services.segments import (
    SegmentError,
    contact_in_segment,
    segment_contact_ids,
    segment_queryset,
    validate_segment_filters,
)
from tests.factories import ContactFactory, RepFactory, SegmentFactory

pytestmark = pytest.mark.django_db


def test_segment_selects_contacts_like_the_api_filters():
    """Country, score range and several stages combine as the API does."""
    hot = ContactFactory(country="India", total_score=55, lifecycle_stage="mql")
    ContactFactory(country="India", total_score=20, lifecycle_stage="mql")
    ContactFactory(country="France", total_score=80, lifecycle_stage="mql")
    sql = ContactFactory(country="India", total_score=90, lifecycle_stage="sql")
    ContactFactory(country="India", total_score=90, lifecycle_stage="lead")
    segment = SegmentFactory(
        filters={
            "country": "India",
            "total_score_min": 40,
            "lifecycle_stage": ["mql", "sql"],
        }
    )

    assert set(segment_queryset(segment)) == {hot, sql}


def test_contact_in_segment_answers_for_one_contact():
    """A contact is in the segment exactly when the filters select it."""
    segment = SegmentFactory(filters={"lead_source": "Reference"})
    referred = ContactFactory(lead_source="Reference")
    googled = ContactFactory(lead_source="Google")

    assert contact_in_segment(referred, segment) is True
    assert contact_in_segment(googled, segment) is False


def test_owner_and_email_filters_read_as_in_the_api():
    """owner takes a user id; email matches the folded address."""
    rep = RepFactory()
    mine = ContactFactory(owner=rep.user, email="ada@example.com")
    ContactFactory(email="bob@example.com")

    by_owner = SegmentFactory(filters={"owner": rep.user.pk})
    by_email = SegmentFactory(filters={"email": " ADA@Example.com "})

    assert list(segment_queryset(by_owner)) == [mine]
    assert list(segment_queryset(by_email)) == [mine]


def test_empty_filters_select_every_contact():
    """A segment without filters holds everyone."""
    contacts = ContactFactory.create_batch(3)

    assert set(segment_queryset(SegmentFactory(filters={}))) == set(contacts)


def test_segment_contact_ids_checks_a_batch_in_one_query(django_assert_num_queries):
    """Which of a batch is in the segment costs one query, whatever its size."""
    inside = ContactFactory.create_batch(5, country="India")
    outside = ContactFactory.create_batch(5, country="Spain")
    segment = SegmentFactory(filters={"country": "India"})
    ids = [c.pk for c in inside + outside]

    with django_assert_num_queries(1):
        found = segment_contact_ids(segment, ids)

    assert found == {c.pk for c in inside}


def test_unknown_filter_key_is_refused_by_name():
    """A typo in a key is an error naming the key, not a silent match-all."""
    with pytest.raises(SegmentError) as caught:
        validate_segment_filters({"country": "India", "contry": "India"})

    assert caught.value.field == "contry"
    assert "'contry'" in caught.value.message
    assert "country" in caught.value.message


def test_held_out_outcome_is_not_a_filter():
    """known_converted is not part of the filter language."""
    with pytest.raises(SegmentError) as caught:
        validate_segment_filters({"known_converted": True})

    assert caught.value.field == "known_converted"


def test_invalid_value_is_refused_naming_the_filter():
    """A stage that does not exist is an error naming lifecycle_stage."""
    with pytest.raises(SegmentError) as caught:
        validate_segment_filters({"lifecycle_stage": ["hot"]})

    assert caught.value.field == "lifecycle_stage"
    assert "hot" in caught.value.message


def test_filters_must_be_an_object():
    """A list instead of an object is refused on the filters field."""
    with pytest.raises(SegmentError) as caught:
        segment_queryset(SegmentFactory(filters=["country"]))

    assert caught.value.field == "filters"
