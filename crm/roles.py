"""The admin groups sales people belong to and what each may do.

Nurture permissions are named by app label and codename so that crm does
not import nurture.
"""

import logging

from django.contrib.auth.models import Group, Permission
from django.db import transaction

logger = logging.getLogger(__name__)

SALES_REPS = "Sales reps"
SALES_MANAGERS = "Sales managers"
INTEGRATIONS = "Integrations"

REP_PERMISSIONS = (
    ("crm", "view_contact"),
    ("crm", "add_contact"),
    ("crm", "change_contact"),
    ("crm", "view_account"),
    ("crm", "view_engagementevent"),
    ("crm", "add_engagementevent"),
    ("crm", "view_stagechange"),
    ("nurture", "view_task"),
    ("nurture", "change_task"),
    ("nurture", "view_handoff"),
    ("nurture", "change_handoff"),
    ("nurture", "view_enrollment"),
    ("nurture", "add_enrollment"),
    ("nurture", "view_touch"),
    ("nurture", "view_audiencemember"),
)

MANAGER_PERMISSIONS = REP_PERMISSIONS + (
    ("crm", "add_account"),
    ("crm", "change_account"),
    ("nurture", "change_enrollment"),
    ("nurture", "view_cadence"),
    ("nurture", "change_cadence"),
    ("nurture", "view_step"),
    ("nurture", "change_step"),
    ("nurture", "view_scoringmodel"),
    ("nurture", "view_scoringrule"),
    ("nurture", "view_routingrule"),
    ("crm", "view_rep"),
)

# What a system pushing data in over the API may do; give its API user this
# group (and no admin access).
INTEGRATION_PERMISSIONS = (
    ("crm", "view_contact"),
    ("crm", "add_contact"),
    ("crm", "change_contact"),
    ("crm", "view_account"),
    ("crm", "add_account"),
    ("crm", "change_account"),
    ("crm", "view_engagementevent"),
    ("crm", "add_engagementevent"),
    ("nurture", "view_cadence"),
    ("nurture", "view_enrollment"),
    ("nurture", "add_enrollment"),
    ("nurture", "change_enrollment"),
    ("nurture", "view_handoff"),
    ("nurture", "change_handoff"),
    ("nurture", "view_audiencemember"),
)

GROUP_PERMISSIONS = {
    SALES_REPS: REP_PERMISSIONS,
    SALES_MANAGERS: MANAGER_PERMISSIONS,
    INTEGRATIONS: INTEGRATION_PERMISSIONS,
}


def ensure_sales_groups() -> dict[str, Group]:
    """Create or update the sales groups so they hold exactly their permissions.

    Return the groups by name. Raise LookupError when a permission does not
    exist, which means migrations have not run or a model was renamed.
    """
    wanted = {pair for pairs in GROUP_PERMISSIONS.values() for pair in pairs}
    found = {
        (perm.content_type.app_label, perm.codename): perm
        for perm in Permission.objects.select_related("content_type").filter(
            content_type__app_label__in={app for app, _ in wanted},
            codename__in={codename for _, codename in wanted},
        )
    }
    missing = sorted(wanted - found.keys())
    if missing:
        names = ", ".join(f"{app}.{codename}" for app, codename in missing)
        raise LookupError(f"permissions not found (run migrate first): {names}")

    groups = {}
    with transaction.atomic():
        for name, pairs in GROUP_PERMISSIONS.items():
            group, created = Group.objects.get_or_create(name=name)
            group.permissions.set([found[pair] for pair in pairs])
            groups[name] = group
            if created:
                logger.info("Created the %s group", name)
    return groups
