"""The base of the import management commands: path, run, print the report."""

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from .base import ImportFileError, ImportReport, data_dir

MAX_ERRORS_SHOWN = 20


class ImportCommand(BaseCommand):
    """Run one import on a file and print what it did.

    Subclasses set ``default_file`` (relative to the data folder) and
    override ``run_import``. The command fails only when the file itself
    cannot be read; bad rows are listed and the good ones kept.
    """

    default_file = ""

    def add_arguments(self, parser):
        parser.add_argument(
            "path",
            nargs="?",
            help=f"CSV file to import (default: <data dir>/{self.default_file})",
        )

    def handle(self, *args, **options):
        path = Path(options["path"] or data_dir() / self.default_file)
        try:
            report = self.run_import(path, options)
        except ImportFileError as exc:
            raise CommandError(str(exc)) from exc
        self.print_report(path, report)

    def run_import(self, path: Path, options: dict) -> ImportReport:
        raise NotImplementedError

    def print_report(self, path: Path, report: ImportReport) -> None:
        self.stdout.write(f"{path.name}: {report.summary()}")
        self.stdout.write(f"took {report.seconds:.2f}s")
        for error in report.errors[:MAX_ERRORS_SHOWN]:
            self.stdout.write(self.style.WARNING(str(error)))
        hidden = len(report.errors) - MAX_ERRORS_SHOWN
        if hidden > 0:
            self.stdout.write(f"... and {hidden} more errors")
