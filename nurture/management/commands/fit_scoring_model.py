"""Fit a scoring model's learned weights on known outcomes."""

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from crm.importers import ImportFileError, data_dir
from nurture.models import ScoringModel
from nurture.services.errors import NurtureError
from nurture.services.evaluation import LEADS_FILE, load_lead_samples
from nurture.services.learning import (
    closed_loop_samples,
    describe_weights,
    fit_scoring_model,
)

WEIGHTS_SHOWN = 15


class Command(BaseCommand):
    help = (
        "Fit a regularised logistic regression on closed-loop outcomes (won "
        "or lost opportunities, accepted or bad-fit handoffs), or on "
        "Leads.csv's Converted column, and store it on a scoring model."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--model", help="Scoring model name (default: the default model)"
        )
        parser.add_argument(
            "--leads-file",
            nargs="?",
            const="",
            metavar="PATH",
            help=f"Learn from Leads.csv instead (default: <data dir>/{LEADS_FILE})",
        )

    def handle(self, *args, **options):
        now = timezone.now()
        model = self.get_model(options["model"])
        if options["leads_file"] is None:
            samples, source = closed_loop_samples(), "closed-loop outcomes"
        else:
            path = Path(options["leads_file"] or data_dir() / LEADS_FILE)
            try:
                samples = load_lead_samples(path, now=now)
            except ImportFileError as exc:
                raise CommandError(str(exc)) from exc
            source = path.name

        try:
            fit = fit_scoring_model(model, samples, now=now, source=source)
        except NurtureError as exc:
            raise CommandError(f"{source}: {exc}") from exc

        self.stdout.write(
            f"Fitted {model} on {fit.n} outcomes from {source} "
            f"({fit.positives} positive), C={fit.c:g}"
        )
        self.stdout.write(f"learned model, 5-fold CV AUC: {fit.cv_auc:.3f}")
        if fit.rules_auc is not None:
            verdict = "beats" if fit.beats_rules else "does not beat"
            self.stdout.write(f"hand-written rules, same folds: {fit.rules_auc:.3f}")
            self.stdout.write(f"the learned model {verdict} the rules")
        state = "on" if model.use_learned else "off"
        self.stdout.write(f"use learned model: {state} (switch it in the admin)")
        for line in describe_weights(fit.weights)[:WEIGHTS_SHOWN]:
            self.stdout.write(f"  {line}")

    def get_model(self, name: str | None) -> ScoringModel:
        models = ScoringModel.objects.all()
        model = (
            models.filter(name=name) if name else models.filter(is_default=True)
        ).first()
        if model is None:
            raise CommandError(
                f"no scoring model named {name!r}"
                if name
                else "no default scoring model: run setup_programme first"
            )
        return model
