"""A/B variants of email steps: which one a contact gets, and how each did."""

import hashlib

from django.db.models import Count, Q, QuerySet

from crm.models import Contact
from nurture.models import Step, StepVariant, Touch


def competing_variants(step: Step) -> list[StepVariant]:
    """Return the variants of ``step`` that take part in its split, in order.

    Only active variants with a positive weight take part. Prefetch
    ``variants`` on the steps of a batch to keep this free of queries.
    """
    return sorted(
        (v for v in step.variants.all() if v.is_active and v.weight > 0),
        key=lambda v: (v.label, v.pk),
    )


def choose_variant(
    step: Step, contact: Contact, *, variants: list[StepVariant] | None = None
) -> StepVariant | None:
    """Return the variant of ``step`` this contact gets, or None without any.

    The choice hashes the step and contact ids, so it is the same on every
    run and every worker, and splits contacts by the variants' weights.
    A batch passes ``variants`` (competing_variants(step)) worked out once
    per step.
    """
    if variants is None:
        variants = competing_variants(step)
    if not variants:
        return None

    total = sum(v.weight for v in variants)
    digest = hashlib.sha256(f"{step.pk}:{contact.pk}".encode()).digest()
    point = int.from_bytes(digest[:8], "big") % total
    for variant in variants:
        if point < variant.weight:
            return variant
        point -= variant.weight
    return variants[-1]  # unreachable: the weights add up to total


def with_variant_stats(variants: QuerySet[StepVariant]) -> QuerySet[StepVariant]:
    """Annotate sent, opened, clicked and replied touch counts, in one query."""
    sent = Q(touches__status=Touch.Status.SENT)
    return variants.annotate(
        sent_count=Count("touches", filter=sent),
        opened_count=Count(
            "touches", filter=sent & Q(touches__opened_at__isnull=False)
        ),
        clicked_count=Count(
            "touches", filter=sent & Q(touches__clicked_at__isnull=False)
        ),
        replied_count=Count(
            "touches", filter=sent & Q(touches__replied_at__isnull=False)
        ),
    )


def rate(part: int, whole: int) -> float | None:
    """Return ``part`` as a share of ``whole``, or None when nothing was sent."""
    return part / whole if whole else None
