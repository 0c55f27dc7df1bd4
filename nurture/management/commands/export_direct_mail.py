"""Write pending direct mail touches to a CSV file for the print vendor."""

from pathlib import Path

from django.core.management.base import BaseCommand
from django.utils import timezone

from nurture import conf
from nurture.services.direct_mail import export_direct_mail


class Command(BaseCommand):
    help = (
        "Export every direct mail touch not exported yet to a CSV file and "
        "mark it exported, so no touch is printed twice."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--output",
            help="File to write; default: a timestamped file in "
            "NURTURE_DIRECT_MAIL_DIR.",
        )

    def handle(self, *args, **options):
        now = timezone.now()
        path = Path(
            options["output"]
            or Path(conf.get("NURTURE_DIRECT_MAIL_DIR"))
            / f"direct-mail-{now:%Y%m%d-%H%M%S}.csv"
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("x", newline="", encoding="utf-8") as out:
            count = export_direct_mail(out, now=now)
        if not count:
            path.unlink()
            self.stdout.write("No direct mail to export.")
            return
        self.stdout.write(f"Exported {count} direct mail touches to {path}")
