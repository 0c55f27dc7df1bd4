"""Who gets a qualified lead: segments, teams and ordered routing rules."""

from django.db import models


class Segment(models.Model):
    """A saved filter over contacts, in the API's filter language."""

    name = models.CharField(max_length=200, unique=True)
    description = models.TextField(blank=True)
    filters = models.JSONField(
        default=dict,
        blank=True,
        help_text='Contact API filters, e.g. {"country": "India", '
        '"total_score_min": 40}.',
    )

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Team(models.Model):
    """Reps who share leads by a routing strategy."""

    name = models.CharField(max_length=200, unique=True)
    members = models.ManyToManyField(
        "crm.Rep", through="TeamMembership", related_name="teams"
    )
    manager = models.ForeignKey(
        "crm.Rep",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="managed_teams",
    )
    # Bumped under a row lock each time the team is given a lead, so round
    # robin stays fair when several workers route at once.
    assignments = models.PositiveBigIntegerField(default=0)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class TeamMembership(models.Model):
    team = models.ForeignKey(Team, on_delete=models.CASCADE)
    rep = models.ForeignKey("crm.Rep", on_delete=models.CASCADE)
    weight = models.PositiveSmallIntegerField(
        default=1, help_text="Share of leads under weighted round robin."
    )
    assigned = models.PositiveIntegerField(
        default=0, help_text="Leads this member has been given by this team."
    )
    is_active = models.BooleanField(default=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["team", "rep"], name="nurture_team_member_unique"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.rep} in {self.team}"


class RoutingRule(models.Model):
    """Send matching contacts to a rep or team; first match by position wins."""

    class Match(models.TextChoices):
        FIELD = "field", "Contact field is one of the values"
        NAMED_ACCOUNT = "named_account", "Named account: its owner"
        SEGMENT = "segment", "Contact is in the segment"
        ALWAYS = "always", "Every contact (fallback)"

    class Strategy(models.TextChoices):
        REGION_LEAST_LOADED = "region", "Least-loaded rep of the region"
        SINGLE = "single", "One rep"
        ROUND_ROBIN = "round_robin", "Team round robin"
        WEIGHTED = "weighted", "Team weighted round robin"
        LEAST_LOADED = "least_loaded", "Team least loaded"

    position = models.PositiveIntegerField(unique=True)
    name = models.CharField(max_length=200)
    match = models.CharField(max_length=16, choices=Match.choices, default=Match.FIELD)
    segment = models.ForeignKey(
        Segment, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    strategy = models.CharField(
        max_length=16, choices=Strategy.choices, default=Strategy.REGION_LEAST_LOADED
    )
    team = models.ForeignKey(
        Team, null=True, blank=True, on_delete=models.PROTECT, related_name="rules"
    )
    field = models.CharField(
        max_length=100,
        blank=True,
        help_text="Contact field to test; blank matches every contact.",
    )
    values = models.CharField(
        max_length=1000, blank=True, help_text="Comma-separated values that match."
    )
    region = models.CharField(max_length=64, blank=True)
    rep = models.ForeignKey(
        "crm.Rep",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        help_text="Assign to this rep instead of a region's least-loaded rep.",
    )
    is_active = models.BooleanField(default=True)

    class Meta:
        ordering = ["position"]

    def __str__(self) -> str:
        return self.name
