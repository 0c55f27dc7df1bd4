"""Fields and filters that turn out-of-range or unstorable input into 400s."""

import django_filters as filters
from rest_framework import serializers

# The largest id a 64-bit primary key holds. SQLite raises OverflowError on
# anything larger instead of finding nothing, so ids are checked up front.
MAX_ID = 2**63 - 1


class IdFilter(filters.NumberFilter):
    """Filter on a foreign key id; an impossible id is a 400, not a 500."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("min_value", 1)
        kwargs.setdefault("max_value", MAX_ID)
        super().__init__(*args, **kwargs)


class BoundedPrimaryKeyRelatedField(serializers.PrimaryKeyRelatedField):
    """A related id that must fit a 64-bit key before it is looked up."""

    def to_internal_value(self, data):
        if isinstance(data, bool):
            self.fail("incorrect_type", data_type=type(data).__name__)
        try:
            number = int(data)
        except (TypeError, ValueError):
            self.fail("incorrect_type", data_type=type(data).__name__)
        if not 1 <= number <= MAX_ID:
            self.fail("does_not_exist", pk_value=data)
        return super().to_internal_value(number)


def reject_nul_characters(value) -> None:
    """Refuse NUL characters anywhere in a JSON value; PostgreSQL cannot store them."""
    if isinstance(value, str):
        if "\x00" in value:
            raise serializers.ValidationError("Text may not contain NUL characters.")
    elif isinstance(value, dict):
        for key, item in value.items():
            reject_nul_characters(key)
            reject_nul_characters(item)
    elif isinstance(value, list):
        for item in value:
            reject_nul_characters(item)


class JSONObjectField(serializers.JSONField):
    """A JSON object (not a list or a string) that a database can store."""

    default_error_messages = {"not_object": "Expected a JSON object."}

    def to_internal_value(self, data):
        value = super().to_internal_value(data)
        if not isinstance(value, dict):
            self.fail("not_object")
        reject_nul_characters(value)
        return value


class JSONListField(serializers.JSONField):
    """A JSON list of values that a database can store."""

    default_error_messages = {"not_list": "Expected a JSON list."}

    def to_internal_value(self, data):
        value = super().to_internal_value(data)
        if not isinstance(value, list):
            self.fail("not_list")
        reject_nul_characters(value)
        return value
