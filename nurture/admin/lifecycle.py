"""Lifecycle actions nurture adds to crm's admin pages.

crm never imports nurture, so the action that enrolls a stale deal's contact
in the re-engagement cadence is attached to crm's OpportunityAdmin here.
"""

from django.contrib import admin, messages
from django.utils import timezone

from crm.admin import OpportunityAdmin

from ..services.lifecycle import re_engage_opportunity_contacts
from .common import REFUSALS


@admin.action(description="Enroll contact in re-engagement cadence")
def re_engage_contacts(modeladmin, request, queryset):
    """Put the selected deals' contacts in the re-engagement cadence."""
    try:
        enrolled = re_engage_opportunity_contacts(
            queryset.values_list("pk", flat=True), now=timezone.now()
        )
    except REFUSALS as error:
        modeladmin.message_user(request, str(error), level=messages.WARNING)
        return
    modeladmin.message_user(
        request,
        f"{enrolled} contacts enrolled in the re-engagement cadence; the "
        "others were already enrolled or may not be contacted.",
        level=messages.SUCCESS,
    )


OpportunityAdmin.actions = (*(OpportunityAdmin.actions or ()), re_engage_contacts)
