"""Options of the crm app, read when used so tests can override them."""

from django.conf import settings

DEFAULTS = {
    # Where the bundled real data sets live (the project's shared/data).
    "CRM_DATA_DIR": None,
}


def get(name: str):
    """Return the setting ``name``, falling back to the app default."""
    return getattr(settings, name, DEFAULTS[name])
