"""A/B variants: a stable, weighted split per contact, and rates per variant."""

import datetime as dt
from collections import Counter

import pytest

from nurture.models import StepVariant, Touch
from nurture.services.variants import choose_variant, rate, with_variant_stats
from tests.factories import ContactFactory, StepFactory, TouchFactory

pytestmark = pytest.mark.django_db

NOW = dt.datetime(2025, 3, 3, 10, 0, tzinfo=dt.UTC)


def variant(step, label, weight=1, **fields):
    return StepVariant.objects.create(
        step=step, label=label, subject=f"{label} subject", body="body",
        weight=weight, **fields,
    )  # fmt: skip


def test_a_step_without_variants_has_none():
    """A step with no variants (or only inactive ones) uses its own text."""
    step = StepFactory()
    variant(step, "A", is_active=False)

    assert choose_variant(step, ContactFactory()) is None


def test_a_contact_always_gets_the_same_variant():
    """The choice depends only on step and contact, so every run agrees."""
    step = StepFactory()
    variant(step, "A")
    variant(step, "B")
    contacts = ContactFactory.create_batch(20)

    first = [choose_variant(step, contact) for contact in contacts]
    again = [choose_variant(step, contact) for contact in contacts]

    assert first == again


def test_contacts_split_by_weight():
    """With weights 3:1, about three quarters of contacts get variant A."""
    step = StepFactory()
    variant(step, "A", weight=3)
    variant(step, "B", weight=1)
    contacts = ContactFactory.build_batch(2000)
    for pk, contact in enumerate(contacts, start=1):
        contact.pk = pk

    counts = Counter(choose_variant(step, contact).label for contact in contacts)

    assert 0.70 < counts["A"] / 2000 < 0.80
    assert counts["A"] + counts["B"] == 2000


def test_an_inactive_variant_gets_no_contacts():
    """Switching a variant off sends everyone to the remaining ones."""
    step = StepFactory()
    variant(step, "A", is_active=False)
    variant(step, "B")

    labels = {choose_variant(step, c).label for c in ContactFactory.create_batch(10)}

    assert labels == {"B"}


def test_choosing_with_prefetched_variants_runs_no_query(django_assert_num_queries):
    """The dispatcher prefetches variants; choosing then costs nothing."""
    step = StepFactory()
    variant(step, "A")
    variant(step, "B")
    step = type(step).objects.prefetch_related("variants").get(pk=step.pk)
    contacts = ContactFactory.create_batch(5)

    with django_assert_num_queries(0):
        for contact in contacts:
            choose_variant(step, contact)


def test_variant_stats_count_sent_opened_clicked_replied(django_assert_num_queries):
    """Each variant shows its sent, opened, clicked and replied counts."""
    # Given variant A with three sent touches (two opened, one clicked and
    # replied) and one failed touch, and variant B with one sent touch
    step = StepFactory()
    a, b = variant(step, "A"), variant(step, "B")
    sent = {"step": step, "status": Touch.Status.SENT}
    TouchFactory(**sent, variant=a, opened_at=NOW, clicked_at=NOW, replied_at=NOW)
    TouchFactory(**sent, variant=a, opened_at=NOW)
    TouchFactory(**sent, variant=a)
    TouchFactory(step=step, variant=a, status=Touch.Status.FAILED)
    TouchFactory(**sent, variant=b)

    # When the stats are read
    with django_assert_num_queries(1):
        stats = {v.label: v for v in with_variant_stats(StepVariant.objects.all())}

    # Then the failed touch is not counted as sent
    assert (
        stats["A"].sent_count, stats["A"].opened_count,
        stats["A"].clicked_count, stats["A"].replied_count,
    ) == (3, 2, 1, 1)  # fmt: skip
    assert stats["B"].sent_count == 1
    assert rate(stats["A"].opened_count, stats["A"].sent_count) == pytest.approx(2 / 3)
    assert rate(0, 0) is None


def test_the_admin_lists_variant_rates_in_constant_queries(
    admin_client, django_assert_max_num_queries
):
    """The variant changelist shows sends and rates without a query per row."""
    step = StepFactory()
    a = variant(step, "A")
    TouchFactory(step=step, variant=a, status=Touch.Status.SENT, opened_at=NOW)
    TouchFactory(step=step, variant=a, status=Touch.Status.SENT)
    for label in ("B", "C", "D"):
        variant(StepFactory(), label)

    with django_assert_max_num_queries(8):
        response = admin_client.get("/admin/nurture/stepvariant/")

    assert response.status_code == 200
    assert "50%" in response.content.decode()
