"""factory-boy factories for every model the tests build."""

import datetime as dt

import factory
from django.contrib.auth import get_user_model
from django.utils import timezone

from crm.models import (
    Account,
    Contact,
    EngagementEvent,
    Opportunity,
    Rep,
    StageChange,
)
from nurture.models import (
    Cadence,
    Channel,
    Enrollment,
    Handoff,
    RoutingRule,
    ScoringModel,
    ScoringRule,
    Step,
    Task,
    Touch,
)


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)

    username = factory.Sequence(lambda n: f"user{n}")
    first_name = factory.Faker("first_name")
    last_name = factory.Faker("last_name")
    email = factory.LazyAttribute(lambda u: f"{u.username}@example.com")
    is_staff = True
    password = factory.django.Password("secret")


class RepFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Rep

    user = factory.SubFactory(UserFactory)
    region = "Central"


class AccountFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Account

    name = factory.Sequence(lambda n: f"Account {n}")
    industry = "software"
    country = "United States"


class ContactFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Contact

    email = factory.Sequence(lambda n: f"contact{n}@example.com")
    first_name = factory.Faker("first_name")
    last_name = factory.Faker("last_name")
    country = "India"


class EngagementEventFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = EngagementEvent

    contact = factory.SubFactory(ContactFactory)
    type = EngagementEvent.Type.PAGE_VIEW
    occurred_at = factory.LazyFunction(timezone.now)


class CadenceFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Cadence

    name = factory.Sequence(lambda n: f"Cadence {n}")
    # Every day, all day, so tests about order and waits are not also tests
    # about send windows unless they say so.
    send_window_start = dt.time(0, 0)
    send_window_end = dt.time(23, 59, 59)
    send_weekdays = [1, 2, 3, 4, 5, 6, 7]


class StepFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Step

    cadence = factory.SubFactory(CadenceFactory)
    position = factory.Sequence(lambda n: n + 1)
    channel = Channel.EMAIL
    wait_amount = 0
    wait_unit = Step.WaitUnit.DAYS
    subject = "Hello {{ contact.first_name }}"
    body = "Hi {{ contact.first_name }}, a note from {{ sender }}."


class EnrollmentFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Enrollment

    contact = factory.SubFactory(ContactFactory)
    cadence = factory.SubFactory(CadenceFactory)
    enrolled_at = factory.LazyFunction(timezone.now)
    next_due_at = factory.LazyFunction(timezone.now)


class TouchFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Touch

    enrollment = factory.SubFactory(EnrollmentFactory)
    step = factory.SubFactory(
        StepFactory, cadence=factory.SelfAttribute("..enrollment.cadence")
    )
    contact = factory.SelfAttribute("enrollment.contact")
    channel = factory.SelfAttribute("step.channel")
    status = Touch.Status.SENT
    created_at = factory.LazyFunction(timezone.now)


class TaskFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Task

    contact = factory.SubFactory(ContactFactory)
    assignee = factory.SubFactory(UserFactory)
    type = Task.Type.CALL
    title = factory.LazyAttribute(lambda t: f"Call {t.contact}")
    due_at = factory.LazyFunction(timezone.now)
    created_at = factory.LazyFunction(timezone.now)


class ScoringModelFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = ScoringModel
        django_get_or_create = ("name",)

    name = "Default"
    is_default = True
    mql_threshold = 60


class ScoringRuleFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = ScoringRule

    model = factory.SubFactory(ScoringModelFactory)
    name = factory.Sequence(lambda n: f"Rule {n}")
    kind = ScoringRule.Kind.FIT
    points = 10


class RoutingRuleFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = RoutingRule

    position = factory.Sequence(lambda n: n + 1)
    name = factory.Sequence(lambda n: f"Routing rule {n}")


class SegmentFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = "nurture.Segment"

    name = factory.Sequence(lambda n: f"Segment {n}")
    filters = factory.LazyFunction(dict)


class TeamFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = "nurture.Team"

    name = factory.Sequence(lambda n: f"Team {n}")


class TeamMembershipFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = "nurture.TeamMembership"

    team = factory.SubFactory(TeamFactory)
    rep = factory.SubFactory(RepFactory)


class HandoffFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Handoff

    contact = factory.SubFactory(ContactFactory)
    assignee = factory.SubFactory(UserFactory)
    created_at = factory.LazyFunction(timezone.now)
    sla_due_at = factory.LazyAttribute(lambda h: h.created_at + dt.timedelta(hours=4))


class StageChangeFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = StageChange

    contact = factory.SubFactory(ContactFactory)
    from_stage = Contact.Stage.LEAD
    to_stage = Contact.Stage.MQL
    changed_at = factory.LazyFunction(timezone.now)


class OpportunityFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Opportunity

    name = factory.Sequence(lambda n: f"Deal {n}")
    account = factory.SubFactory(AccountFactory)
    contact = factory.SubFactory(ContactFactory)
