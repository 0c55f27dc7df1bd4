"""Next best content: stage, persona or industry, never what was consumed."""

import pytest

from crm.models import Contact, EngagementEvent
from nurture.models import Channel, ContentItem, Step, Touch
from nurture.services.content import buyer_stage, next_content_for, offered_detail
from nurture.services.programme import (
    CADENCE_NAME,
    CONTENT_ITEMS,
    ensure_default_programme,
)
from nurture.services.rendering import render_step_email
from tests.factories import (
    AccountFactory,
    ContactFactory,
    EngagementEventFactory,
    StepFactory,
    TouchFactory,
)

pytestmark = pytest.mark.django_db

Stage = ContentItem.BuyerStage


def item(title, stage=Stage.AWARENESS, priority=100, **fields):
    return ContentItem.objects.create(
        title=title, url=f"https://example.com/{title.lower().replace(' ', '-')}",
        kind=ContentItem.Kind.GUIDE, buyer_stage=stage, priority=priority, **fields,
    )  # fmt: skip


@pytest.mark.parametrize(
    "lifecycle, expected",
    [
        (Contact.Stage.SUBSCRIBER, Stage.AWARENESS),
        (Contact.Stage.LEAD, Stage.AWARENESS),
        (Contact.Stage.MQL, Stage.CONSIDERATION),
        (Contact.Stage.RECYCLED, Stage.CONSIDERATION),
        (Contact.Stage.SQL, Stage.DECISION),
        (Contact.Stage.OPPORTUNITY, Stage.DECISION),
        (Contact.Stage.CUSTOMER, Stage.DECISION),
    ],
)
def test_lifecycle_stages_map_to_buyer_stages(lifecycle, expected):
    """Leads learn, MQLs compare, SQLs and later decide."""
    assert buyer_stage(Contact(lifecycle_stage=lifecycle)) == expected


def test_the_item_for_the_contacts_stage_comes_first_by_priority():
    """Among general items of the right stage, the lowest priority wins."""
    item("Decision guide", Stage.DECISION, priority=1)
    item("Later guide", priority=50)
    first = item("First guide", priority=10)
    lead = ContactFactory(lifecycle_stage=Contact.Stage.LEAD)

    assert next_content_for([lead]) == {lead.pk: first}


def test_a_persona_match_beats_an_industry_match_and_a_general_item():
    """Occupation or title naming a persona beats industry, which beats none."""
    item("General", priority=1)
    by_industry = item("For banks", industries=["Banking"], priority=2)
    by_persona = item("For students", personas=["Student"], priority=3)
    student = ContactFactory(
        occupation="Student", account=AccountFactory(industry="banking")
    )
    banker = ContactFactory(title="Analyst", account=AccountFactory(industry="Banking"))

    best = next_content_for([student, banker])

    assert best == {student.pk: by_persona, banker.pk: by_industry}


def test_an_item_for_another_persona_is_not_offered():
    """An item aimed at other people is no fit, even when nothing else is."""
    item("For CFOs", personas=["CFO"])
    engineer = ContactFactory(title="Engineer")

    assert next_content_for([engineer]) == {engineer.pk: None}


def test_downloaded_and_already_offered_items_are_skipped():
    """Content the contact downloaded or an email already offered is passed over."""
    # Given three items, one downloaded and one offered in an earlier email
    downloaded = item("Downloaded", priority=1)
    offered = item("Offered", priority=2)
    fresh = item("Fresh", priority=3)
    contact = ContactFactory()
    EngagementEventFactory(
        contact=contact,
        type=EngagementEvent.Type.CONTENT_DOWNLOAD,
        properties={"content_id": downloaded.pk},
    )
    step = StepFactory(channel=Channel.EMAIL)
    TouchFactory(
        enrollment__contact=contact,
        enrollment__cadence=step.cadence,
        step=step,
        status=Touch.Status.SENT,
        detail=offered_detail(offered),
    )

    # When the next item is picked, then it is the fresh one
    assert next_content_for([contact]) == {contact.pk: fresh}


def test_another_contacts_download_does_not_count():
    """What one contact consumed says nothing about another."""
    guide = item("Guide")
    reader, other = ContactFactory(), ContactFactory()
    EngagementEventFactory(
        contact=reader,
        type=EngagementEvent.Type.CONTENT_DOWNLOAD,
        properties={"content_id": guide.pk},
    )

    assert next_content_for([reader, other]) == {reader.pk: None, other.pk: guide}


def test_the_batch_costs_three_queries_whatever_its_size(django_assert_num_queries):
    """Items, downloads and offers are read once for the whole batch."""
    item("Guide")
    few = list(Contact.objects.select_related("account").filter(
        pk__in=[c.pk for c in ContactFactory.create_batch(2)]
    ))  # fmt: skip
    many = list(Contact.objects.select_related("account").filter(
        pk__in=[c.pk for c in ContactFactory.create_batch(30)]
    ))  # fmt: skip

    with django_assert_num_queries(3):
        next_content_for(few)
    with django_assert_num_queries(3):
        next_content_for(many)


def test_the_default_programme_offers_content_with_a_fallback():
    """The default cadence's second email names an item, or reads fine without."""
    # Given the default programme, run twice
    first = ensure_default_programme()
    again = ensure_default_programme()
    step = Step.objects.get(cadence__name=CADENCE_NAME, name="Success stories")
    student = ContactFactory(
        first_name="Ravi", occupation="Student", lifecycle_stage=Contact.Stage.MQL
    )

    # When the step renders with and without a content item
    best = next_content_for([student])[student.pk]
    offered = render_step_email(step, student, content=best)
    plain = render_step_email(step, student, content=None)

    # Then the student gets the student story, and the fallback has no gap
    assert len(first["content_items"]) == len(CONTENT_ITEMS)
    assert again["content_items"] == []
    assert best.title == "From student to data analyst in one year"
    assert f"You may also like {best.title}: {best.url}" in offered.text
    assert "You may also like" not in plain.text
    assert "Hi Ravi," in plain.text
