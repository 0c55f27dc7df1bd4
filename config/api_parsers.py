"""How the API reads request bodies."""

from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser


class BoundedJSONParser(JSONParser):
    """JSON, with a body nested past Python's recursion limit refused as 400.

    The standard parser lets RecursionError through, so a few kilobytes of
    ``[[[[...`` answered 500. Depth below that limit is checked by the fields
    that take JSON values (crm.api.fields.MAX_JSON_DEPTH).
    """

    def parse(self, stream, media_type=None, parser_context=None):
        try:
            return super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise ParseError("JSON parse error - nested too deeply.") from None
