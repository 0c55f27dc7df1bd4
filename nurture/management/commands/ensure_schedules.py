"""Create or update the django-q2 schedules of the engine tasks."""

from django.core.management.base import BaseCommand

from nurture.schedules import ensure_schedules


class Command(BaseCommand):
    help = "Create the engine's repeating django-q2 schedules, once each."

    def handle(self, *args, **options):
        for name, created in ensure_schedules().items():
            self.stdout.write(f"{'created' if created else 'updated'}: {name}")
