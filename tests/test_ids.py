"""Filtering a batch by ids without preparing each id (nurture.services.ids)."""

import pytest

from nurture.models import Enrollment
from nurture.services.ids import ids_in
from tests.factories import EnrollmentFactory

pytestmark = pytest.mark.django_db


def test_ids_in_matches_exactly_the_rows_pk_in_matches():
    """ids_in("pk", ids) selects the same rows as pk__in, and nothing else."""
    enrollments = EnrollmentFactory.create_batch(4)
    wanted = [enrollments[0].pk, enrollments[2].pk, 10**9]

    found = set(Enrollment.objects.filter(ids_in("pk", wanted)).values_list("pk"))

    assert found == {(enrollments[0].pk,), (enrollments[2].pk,)}
    assert found == set(Enrollment.objects.filter(pk__in=wanted).values_list("pk"))


def test_ids_in_an_empty_list_matches_nothing_and_updates_nothing():
    """An empty id list selects no rows, so an update through it changes none."""
    EnrollmentFactory()

    assert not Enrollment.objects.filter(ids_in("pk", [])).exists()
    assert Enrollment.objects.filter(ids_in("pk", [])).update(next_position=9) == 0
