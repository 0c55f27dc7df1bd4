"""Scoring models and rules, per-model contact scores and rescoring jobs."""

from django.db import models
from django.db.models import Q


class ScoringModel(models.Model):
    """A named set of scoring rules with the thresholds that qualify a lead."""

    name = models.CharField(max_length=100, unique=True)
    is_default = models.BooleanField(default=False)
    mql_threshold = models.IntegerField(default=60)
    sql_threshold = models.IntegerField(null=True, blank=True)
    intent_half_life_days = models.FloatField(
        default=30, help_text="Intent points halve after this many days."
    )
    description = models.TextField(blank=True)
    is_active = models.BooleanField(default=True)
    use_learned = models.BooleanField(
        default=False,
        help_text="Score with the learned weights instead of the hand-written rules.",
    )
    learned_weights = models.JSONField(
        default=dict,
        blank=True,
        help_text="Feature name -> weight of the fitted logistic regression.",
    )
    learned_intercept = models.FloatField(null=True, blank=True)
    learned_metrics = models.JSONField(
        default=dict, blank=True, help_text="How the learned model was validated."
    )
    learned_at = models.DateTimeField(null=True, blank=True)
    rules_changed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(
                fields=["is_default"],
                condition=Q(is_default=True),
                name="nurture_one_default_scoring_model",
            ),
        ]

    def __str__(self) -> str:
        return self.name


class ScoringRule(models.Model):
    """Points for a contact attribute (fit) or an engagement event (intent)."""

    class Kind(models.TextChoices):
        FIT = "fit", "Fit"
        INTENT = "intent", "Intent"

    class Operator(models.TextChoices):
        EQUALS = "equals", "equals"
        IN = "in", "is one of (comma-separated)"
        CONTAINS = "contains", "contains"
        GTE = "gte", "at least"
        LTE = "lte", "at most"
        IS_SET = "is_set", "is set"
        IS_BLANK = "is_blank", "is blank"
        IS_TRUE = "is_true", "is true"

    model = models.ForeignKey(
        ScoringModel, on_delete=models.CASCADE, related_name="rules"
    )
    name = models.CharField(max_length=200)
    kind = models.CharField(max_length=8, choices=Kind.choices)
    event_type = models.CharField(
        max_length=32,
        blank=True,
        help_text="Intent rules: the engagement event type they score.",
    )
    field = models.CharField(
        max_length=100,
        blank=True,
        help_text="Fit rules: a contact field or attributes key (account__industry "
        "for the account). Intent rules: an event property, or blank.",
    )
    operator = models.CharField(
        max_length=16, choices=Operator.choices, default=Operator.EQUALS
    )
    value = models.CharField(max_length=255, blank=True)
    points = models.IntegerField()
    max_points = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text="Intent rules: at most this many points per contact "
        "(per period, when a period is set).",
    )
    cap_period_days = models.PositiveIntegerField(
        null=True, blank=True, help_text="The period max_points applies to."
    )
    is_active = models.BooleanField(default=True)

    class Meta:
        ordering = ["model", "kind", "name"]
        constraints = [
            models.UniqueConstraint(
                fields=["model", "name"], name="nurture_rule_name_unique"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.points:+d})"


class ContactScore(models.Model):
    """A contact's score under one scoring model, with its explanation."""

    contact = models.ForeignKey(
        "crm.Contact", on_delete=models.CASCADE, related_name="scores"
    )
    model = models.ForeignKey(
        ScoringModel, on_delete=models.CASCADE, related_name="contact_scores"
    )
    fit_score = models.IntegerField(default=0)
    intent_score = models.FloatField(default=0)
    intent_scored_at = models.DateTimeField(null=True, blank=True)
    total_score = models.IntegerField(default=0)
    explanation = models.JSONField(default=list, blank=True)
    rule_points = models.JSONField(
        default=dict,
        blank=True,
        help_text="Rule id -> points counted in its current cap period.",
    )
    updated_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["contact", "model"], name="nurture_one_score_per_model"
            ),
        ]
        indexes = [models.Index(fields=["model", "-total_score"])]

    def __str__(self) -> str:
        return f"{self.contact_id} under {self.model_id}: {self.total_score}"


class RescoreJob(models.Model):
    """A background rescoring of every contact under one model, with progress."""

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"

    model = models.ForeignKey(
        ScoringModel, on_delete=models.CASCADE, related_name="rescore_jobs"
    )
    status = models.CharField(
        max_length=16, choices=Status.choices, default=Status.QUEUED
    )
    total = models.PositiveIntegerField(default=0)
    processed = models.PositiveIntegerField(default=0)
    last_contact_id = models.BigIntegerField(
        default=0, help_text="Contacts up to this id are rescored."
    )
    error = models.TextField(blank=True)
    created_at = models.DateTimeField()
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"Rescore {self.model} ({self.processed}/{self.total})"
