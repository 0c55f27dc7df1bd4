"""The crm admin: changelists that stay cheap as rows grow, the contact page."""

import pytest
from django.urls import reverse

from crm.models import Contact, EngagementEvent
from nurture.models import ContactScore
from tests.admin_support import (
    assert_changelist_queries_constant,
)
from tests.factories import (
    AccountFactory,
    ContactFactory,
    EngagementEventFactory,
    OpportunityFactory,
    RepFactory,
    ScoringModelFactory,
    StageChangeFactory,
    UserFactory,
)

pytestmark = pytest.mark.django_db


def make_rep(_):
    RepFactory(manager=RepFactory())


def make_account(_):
    AccountFactory(owner=UserFactory(), parent=AccountFactory())


def make_contact(owner):
    ContactFactory(account=AccountFactory(), owner=owner)


def make_event(owner):
    EngagementEventFactory(contact=ContactFactory(owner=owner))


def make_stage_change(owner):
    StageChangeFactory(contact=ContactFactory(owner=owner), actor=owner)


def make_opportunity(owner):
    OpportunityFactory(owner=owner)


CHANGELISTS = [
    ("admin:crm_rep_changelist", make_rep),
    ("admin:crm_account_changelist", make_account),
    ("admin:crm_contact_changelist", make_contact),
    ("admin:crm_engagementevent_changelist", make_event),
    ("admin:crm_stagechange_changelist", make_stage_change),
    ("admin:crm_opportunity_changelist", make_opportunity),
]


@pytest.mark.parametrize(("url_name", "make_row"), CHANGELISTS)
def test_changelist_query_count_does_not_grow_with_rows(
    admin_client, admin_user, django_assert_num_queries, url_name, make_row
):
    """A changelist runs the same number of queries for 30 rows as for 3."""
    assert_changelist_queries_constant(
        admin_client, admin_user, django_assert_num_queries, url_name, make_row
    )


def test_contact_changelist_skips_the_full_count_and_distinct_filters(admin_client):
    """The contact list offers reps as owners and never counts every contact."""
    rep = RepFactory(user__first_name="Dana", user__last_name="Reyes")
    ContactFactory(owner=rep.user)

    response = admin_client.get(reverse("admin:crm_contact_changelist"))

    assert response.status_code == 200
    assert response.context["cl"].show_full_result_count is False
    assert "Dana Reyes" in response.content.decode()


def test_contact_search_finds_a_whole_email_whatever_its_case(admin_client):
    """Searching a whole address matches the stored, case-folded email."""
    wanted = ContactFactory(email="ada@example.com")
    ContactFactory(email="grace@example.com")

    response = admin_client.get(
        reverse("admin:crm_contact_changelist"), {"q": " Ada@Example.COM "}
    )

    assert list(response.context["cl"].result_list) == [wanted]


def test_contact_search_finds_an_external_id_or_a_last_name_prefix(admin_client):
    """An exact external id or the start of a last name finds the contact."""
    by_id = ContactFactory(external_id="7927b2df-8bba", last_name="Zed")
    by_name = ContactFactory(last_name="Lovelace")
    url = reverse("admin:crm_contact_changelist")

    assert list(
        admin_client.get(url, {"q": "7927b2df-8bba"}).context["cl"].result_list
    ) == [by_id]
    assert list(admin_client.get(url, {"q": "Lovel"}).context["cl"].result_list) == [
        by_name
    ]


def test_contact_page_shows_events_stage_changes_and_score(admin_client):
    """The contact page lists what the contact did and how the stage moved."""
    contact = ContactFactory(
        fit_score=35,
        total_score=72,
        score_explanation=[
            {"rule": "Senior title", "points": 20},
            {
                "rule": "Pricing page",
                "kind": "intent",
                "points": 30,
                "hits": 3,
                "at": "2025-03-03T09:15:00+00:00",
            },
        ],
    )
    EngagementEventFactory(
        contact=contact, type=EngagementEvent.Type.PRICING_VISIT, source="website"
    )
    StageChangeFactory(
        contact=contact,
        from_stage=Contact.Stage.LEAD,
        to_stage=Contact.Stage.MQL,
        reason="score passed 60",
    )

    response = admin_client.get(reverse("admin:crm_contact_change", args=[contact.pk]))

    page = response.content.decode()
    assert response.status_code == 200
    assert "Pricing page visit" in page
    assert "score passed 60" in page
    assert "Marketing qualified" in page
    assert "Senior title (+20)" in page
    assert "Pricing page ×3 (+30, last 2025-03-03 09:15)" in page
    assert ">72<" in page.replace("\n", "").replace(" ", "")


def test_imported_outcome_is_shown_but_not_editable(admin_client):
    """known_converted reads as the imported outcome and has no form input."""
    contact = ContactFactory(known_converted=True)
    url = reverse("admin:crm_contact_change", args=[contact.pk])

    response = admin_client.get(url)

    assert "known_converted" not in response.context["adminform"].form.fields
    assert "imported outcome" in response.content.decode().lower()
    assert "converted" in response.content.decode()


def test_editing_a_contact_leaves_stage_and_imported_outcome_alone(admin_client):
    """Saving the form cannot move the stage or rewrite the held-out outcome."""
    # Given a lead whose source system recorded no conversion.
    contact = ContactFactory(known_converted=False, title="Analyst")
    url = reverse("admin:crm_contact_change", args=[contact.pk])
    form = admin_client.get(url).context["adminform"].form
    data = {
        name: value
        for name, value in form.initial.items()
        if value is not None and name in form.fields
    }

    # When an operator edits the title and posts a stage and outcome too.
    data.update(
        title="Head of Data",
        lifecycle_stage=Contact.Stage.CUSTOMER,
        known_converted="true",
        attributes="{}",
    )
    response = admin_client.post(url, data)

    # Then only the editable field changed.
    assert response.status_code == 302
    contact.refresh_from_db()
    assert contact.title == "Head of Data"
    assert contact.lifecycle_stage == Contact.Stage.LEAD
    assert contact.known_converted is False


def test_add_contact_page_loads_without_the_timeline(admin_client):
    """The add page offers a stage and no history sections."""
    response = admin_client.get(reverse("admin:crm_contact_add"))

    assert response.status_code == 200
    assert "lifecycle_stage" in response.context["adminform"].form.fields
    sections = [fieldset.name for fieldset in response.context["adminform"]]
    assert "Profile" in sections
    assert "Engagement events" not in sections
    assert "Stage history" not in sections


def test_contact_page_shows_an_explanation_scoring_did_not_write(admin_client):
    """An explanation set by hand to something odd is shown, not a 500."""
    contact = ContactFactory(score_explanation=5)
    model = ScoringModelFactory(is_default=True)
    ContactScore.objects.create(
        contact=contact, model=model, explanation="checked by hand"
    )

    response = admin_client.get(reverse("admin:crm_contact_change", args=[contact.pk]))

    assert response.status_code == 200
    assert "checked by hand" in response.content.decode()
