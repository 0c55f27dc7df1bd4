"""Import the real demo data and set up the default programme, idempotently."""

from django.core.management import call_command
from django.core.management.base import BaseCommand
from django.utils import timezone

from crm.models import Contact
from nurture.models import Cadence
from nurture.services.enrollment import enroll_contacts
from nurture.services.programme import ensure_default_programme

DEFAULT_CADENCE = "MQL nurture"


class Command(BaseCommand):
    help = (
        "Import the reps, accounts, leads and email contacts from the shared "
        "data folder, create the default programme and enroll open leads. "
        "Safe to run again: nothing already there changes."
    )

    def handle(self, *args, **options):
        for command in ("import_reps", "import_accounts", "import_leads"):
            call_command(command, stdout=self.stdout, stderr=self.stderr)
        call_command("import_contacts", stdout=self.stdout, stderr=self.stderr)

        created = ensure_default_programme()
        self.stdout.write(f"Default programme: {created}")

        cadence = Cadence.objects.get(name=DEFAULT_CADENCE)
        leads = Contact.objects.filter(
            lifecycle_stage__in=[Contact.Stage.SUBSCRIBER, Contact.Stage.LEAD]
        ).values_list("pk", flat=True)
        enrolled = enroll_contacts(leads, cadence, now=timezone.now())
        self.stdout.write(f"Enrolled {enrolled} leads in {cadence.name!r}.")
