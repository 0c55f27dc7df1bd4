import json
from pathlib import Path

from django.core.management.base import CommandError
from django.utils import timezone

from crm.importers import ImportMappingError, import_contacts
from crm.importers.command import ImportCommand


class Command(ImportCommand):
    help = "Import contacts from a CSV file through a column mapping."
    default_file = "mautic__mautic/fakeleaddata.csv"

    def add_arguments(self, parser):
        super().add_arguments(parser)
        parser.add_argument(
            "--mapping",
            help=(
                'JSON object {"csv column": "contact field" or "attributes.<key>"'
                ' or "account" or "account.domain"}, or a path to a JSON file'
            ),
        )
        parser.add_argument(
            "--source", default="csv", help="Lead source of new contacts."
        )

    def run_import(self, path, options):
        mapping = load_mapping(options["mapping"])
        try:
            return import_contacts(
                path, mapping, now=timezone.now(), source=options["source"]
            )
        except ImportMappingError as exc:
            raise CommandError(str(exc)) from exc


def load_mapping(value: str | None) -> dict | None:
    """Read --mapping as inline JSON, or as the path of a JSON file."""
    if not value:
        return None
    text = value
    if not value.lstrip().startswith("{"):
        try:
            text = Path(value).read_text(encoding="utf-8")
        except OSError as exc:
            raise CommandError(f"cannot read the mapping: {exc}") from exc
    try:
        mapping = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CommandError(f"the mapping is not valid JSON: {exc}") from exc
    if not isinstance(mapping, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in mapping.items()
    ):
        raise CommandError("the mapping must be a JSON object of strings")
    return mapping
