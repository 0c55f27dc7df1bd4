"""Helpers the API tests share: clients that authenticate like integrations."""

from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from tests.factories import RepFactory, UserFactory


def token_client(user) -> APIClient:
    """Return a client that sends ``Authorization: Token ...`` for a user."""
    token, _ = Token.objects.get_or_create(user=user)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    return client


def make_manager():
    """Return a user who manages one rep, and so sees every record."""
    manager = RepFactory()
    RepFactory(manager=manager)
    return manager.user


def make_rep():
    """Return a user who is a plain rep and sees only their own records."""
    return RepFactory(user=UserFactory()).user
