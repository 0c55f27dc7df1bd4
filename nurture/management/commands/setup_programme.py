"""Create the default cadence, scoring model and routing rules."""

from django.core.management.base import BaseCommand

from nurture.services.programme import ensure_default_programme


class Command(BaseCommand):
    help = "Create the default nurture programme; existing parts are kept."

    def handle(self, *args, **options):
        created = ensure_default_programme()
        for kind, names in created.items():
            label = kind.replace("_", " ")
            self.stdout.write(f"{label}: {len(names)} created")
            for name in names:
                self.stdout.write(f"  + {name}")
