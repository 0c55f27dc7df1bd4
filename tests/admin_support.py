"""Helpers the admin tests share."""

from django.db import connection
from django.test.utils import CaptureQueriesContext


def changelist_queries(client, url: str) -> int:
    """Load a changelist and return how many queries it ran."""
    with CaptureQueriesContext(connection) as captured:
        response = client.get(url)
    assert response.status_code == 200
    return len(captured)


def rows_shown(response) -> int:
    """Return how many rows a changelist response lists."""
    return len(response.context["cl"].result_list)


def messages_of(response) -> list[str]:
    """Return the admin messages a followed response carries."""
    return [str(m) for m in response.context["messages"]]
