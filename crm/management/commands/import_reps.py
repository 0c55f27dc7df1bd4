from crm.importers import import_reps
from crm.importers.command import ImportCommand


class Command(ImportCommand):
    help = "Import sales reps, their managers and regions as users and Reps."
    default_file = "kisaraF__CRM-Sales_Analysis/sales_teams.csv"

    def run_import(self, path, options):
        return import_reps(path)
