from django.utils import timezone

from crm.importers import import_accounts
from crm.importers.command import ImportCommand


class Command(ImportCommand):
    help = "Import companies as accounts, linking subsidiaries to parents."
    default_file = "kisaraF__CRM-Sales_Analysis/accounts.csv"

    def run_import(self, path, options):
        return import_accounts(path, now=timezone.now())
