"""The nurture app's models, one module per concern."""

from .cadences import (
    TASK_CHANNELS,
    AudienceMember,
    Cadence,
    Channel,
    ContentItem,
    Enrollment,
    Step,
    StepVariant,
    Touch,
)
from .handoffs import (
    Handoff,
    HandoffEscalation,
    SlaPolicy,
    WebhookDelivery,
    WebhookSubscription,
)
from .routing import RoutingRule, Segment, Team, TeamMembership
from .scoring import ContactScore, RescoreJob, ScoringModel, ScoringRule
from .tasks import Task

__all__ = [
    "TASK_CHANNELS",
    "AudienceMember",
    "Cadence",
    "Channel",
    "ContactScore",
    "ContentItem",
    "Enrollment",
    "Handoff",
    "HandoffEscalation",
    "RescoreJob",
    "RoutingRule",
    "ScoringModel",
    "ScoringRule",
    "Segment",
    "SlaPolicy",
    "Step",
    "StepVariant",
    "Task",
    "Team",
    "TeamMembership",
    "Touch",
    "WebhookDelivery",
    "WebhookSubscription",
]
