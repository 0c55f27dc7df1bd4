from django.utils import timezone

from crm.importers import import_leads
from crm.importers.command import ImportCommand


class Command(ImportCommand):
    help = "Import the X Education lead export as contacts and engagement events."
    default_file = "GnyaneshKanchetti2002__XEducation-LeadScoringCaseStudy/Leads.csv"

    def run_import(self, path, options):
        return import_leads(path, now=timezone.now())
