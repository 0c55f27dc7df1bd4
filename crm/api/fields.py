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


# How deep a JSON value sent to the API may nest; event properties and
# attributes are flat in practice, and deeper values only cost the database.
MAX_JSON_DEPTH = 32


def reject_unstorable_text(value, *, depth: int = 0) -> None:
    """Refuse a JSON value that a database would refuse or choke on.

    NUL characters and unpaired surrogates (half of a UTF-16 pair, sent as
    ``\\ud800``) cannot be stored as text by PostgreSQL, anywhere in a key
    or a value; values nested deeper than MAX_JSON_DEPTH are refused too.
    """
    if depth > MAX_JSON_DEPTH:
        raise serializers.ValidationError(
            f"JSON may not nest deeper than {MAX_JSON_DEPTH} levels."
        )
    if isinstance(value, str):
        if "\x00" in value:
            raise serializers.ValidationError("Text may not contain NUL characters.")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise serializers.ValidationError(
                "Text may not contain unpaired surrogate characters (U+D800 to U+DFFF)."
            ) from None
    elif isinstance(value, dict):
        for key, item in value.items():
            reject_unstorable_text(key, depth=depth + 1)
            reject_unstorable_text(item, depth=depth + 1)
    elif isinstance(value, list):
        for item in value:
            reject_unstorable_text(item, depth=depth + 1)


class JSONObjectField(serializers.JSONField):
    """A JSON object (not a list or a string) that a database can store."""

    default_error_messages = {"not_object": "Expected a JSON object."}

    def to_internal_value(self, data):
        value = super().to_internal_value(data)
        if not isinstance(value, dict):
            self.fail("not_object")
        reject_unstorable_text(value)
        return value


class JSONListField(serializers.JSONField):
    """A JSON list of values that a database can store."""

    default_error_messages = {"not_list": "Expected a JSON list."}

    def to_internal_value(self, data):
        value = super().to_internal_value(data)
        if not isinstance(value, list):
            self.fail("not_list")
        reject_unstorable_text(value)
        return value
