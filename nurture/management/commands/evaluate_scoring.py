"""Report how well a scoring model ranks the real X Education leads."""

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from crm.importers import ImportFileError, data_dir
from nurture.models import ScoringModel
from nurture.services.evaluation import LEADS_FILE, evaluate_scoring


class Command(BaseCommand):
    help = (
        "Score Leads.csv with a scoring model's rules and report ROC AUC, "
        "top-decile lift and the conversion rate per score band."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "path", nargs="?", help=f"Leads.csv (default: <data dir>/{LEADS_FILE})"
        )
        parser.add_argument(
            "--model",
            help="Scoring model name (default: the default model, or the "
            "default programme's rules when the database has none)",
        )

    def handle(self, *args, **options):
        path = Path(options["path"] or data_dir() / LEADS_FILE)
        model = self.get_model(options["model"])
        try:
            evaluation, rules = evaluate_scoring(path, model=model, now=timezone.now())
        except ImportFileError as exc:
            raise CommandError(str(exc)) from exc
        except ValueError as exc:
            raise CommandError(f"{path.name}: {exc}") from exc

        source = f"model {model}" if model else "the default programme (in memory)"
        self.stdout.write(f"{path.name}: {evaluation.n} leads scored with {source}")
        self.stdout.write(f"rules: {len(rules)} active")
        self.stdout.write(
            f"base rate: {evaluation.positives}/{evaluation.n} converted "
            f"({evaluation.base_rate:.1%})"
        )
        self.stdout.write(f"ROC AUC: {evaluation.auc:.3f}")
        self.stdout.write(f"top-decile lift: {evaluation.top_decile_lift:.2f}")
        self.stdout.write(f"{'band':>8} {'leads':>6} {'converted':>9} {'rate':>6}")
        for band in evaluation.bands:
            self.stdout.write(
                f"{band.label:>8} {band.count:>6} {band.converted:>9} {band.rate:>6.1%}"
            )

    def get_model(self, name: str | None) -> ScoringModel | None:
        if name:
            model = ScoringModel.objects.filter(name=name).first()
            if model is None:
                raise CommandError(f"no scoring model named {name!r}")
            return model
        return ScoringModel.objects.filter(is_default=True).first()
