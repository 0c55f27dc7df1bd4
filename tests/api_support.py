"""Helpers the API tests share: clients that authenticate like integrations."""

from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from crm.roles import INTEGRATIONS, SALES_MANAGERS, SALES_REPS, ensure_sales_groups
from tests.factories import RepFactory, UserFactory


def token_client(user) -> APIClient:
    """Return a client that sends ``Authorization: Token ...`` for a user."""
    token, _ = Token.objects.get_or_create(user=user)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    return client


def make_manager():
    """Return a manager of one rep who also runs an integration's token.

    Managers see every record; the integration group lets the same client
    push data in, as a sales-ops user's script would.
    """
    groups = ensure_sales_groups()
    manager = RepFactory()
    RepFactory(manager=manager)
    manager.user.groups.add(groups[SALES_MANAGERS], groups[INTEGRATIONS])
    return manager.user


def make_integration():
    """Return an API user in the Integrations group only, as the roles say."""
    user = UserFactory()
    user.groups.add(ensure_sales_groups()[INTEGRATIONS])
    return user


def make_rep():
    """Return a plain rep, in the Sales reps group, who sees only their own."""
    user = RepFactory(user=UserFactory()).user
    user.groups.add(ensure_sales_groups()[SALES_REPS])
    return user
