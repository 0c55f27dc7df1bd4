"""Helpers the admin tests share."""

from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse


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


def assert_changelist_queries_constant(
    client, user, assert_num_queries, url_name: str, make_row
):
    """Check a changelist runs the same number of queries for 30 rows as for 3.

    ``make_row(user)`` adds one row; return the page of thirty.
    """
    # Given three rows, with a warm-up load so caches do not count.
    url = reverse(url_name)
    for _ in range(3):
        make_row(user)
    client.get(url)
    at_three = changelist_queries(client, url)

    # When the table grows to thirty rows.
    for _ in range(27):
        make_row(user)

    # Then the page lists them with exactly the same number of queries.
    with assert_num_queries(at_three):
        response = client.get(url)
    assert response.status_code == 200
    assert rows_shown(response) >= 30
    return response
