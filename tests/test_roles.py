"""The sales groups and the ensure_admin command."""

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management import call_command

from crm.roles import SALES_MANAGERS, SALES_REPS, ensure_sales_groups


def codenames(group):
    return {
        f"{app}.{codename}"
        for app, codename in group.permissions.values_list(
            "content_type__app_label", "codename"
        )
    }


@pytest.mark.django_db
def test_sales_groups_hold_their_permissions():
    """Reps work contacts, tasks and handoffs; managers also run cadences and
    read the scoring and routing set-up; neither may delete anything."""
    groups = ensure_sales_groups()

    reps = codenames(groups[SALES_REPS])
    managers = codenames(groups[SALES_MANAGERS])
    assert reps == {
        "crm.view_contact",
        "crm.add_contact",
        "crm.change_contact",
        "crm.view_account",
        "crm.view_engagementevent",
        "crm.add_engagementevent",
        "crm.view_stagechange",
        "nurture.view_task",
        "nurture.change_task",
        "nurture.view_handoff",
        "nurture.change_handoff",
        "nurture.view_enrollment",
        "nurture.add_enrollment",
        "nurture.view_touch",
        "nurture.view_audiencemember",
    }
    assert managers - reps == {
        "crm.add_account",
        "crm.change_account",
        "nurture.change_enrollment",
        "nurture.view_cadence",
        "nurture.change_cadence",
        "nurture.view_step",
        "nurture.change_step",
        "nurture.view_scoringmodel",
        "nurture.view_scoringrule",
        "nurture.view_routingrule",
        "crm.view_rep",
    }
    assert reps < managers
    assert not any(".delete_" in name for name in managers)


@pytest.mark.django_db
def test_sales_groups_are_restored_idempotently():
    """Running it again keeps two groups and puts back a removed permission."""
    # given the groups, with one permission taken away by hand
    groups = ensure_sales_groups()
    groups[SALES_REPS].permissions.remove(
        groups[SALES_REPS].permissions.get(codename="view_touch")
    )

    # when ensured again
    again = ensure_sales_groups()

    # then nothing is duplicated and the permission is back
    assert Group.objects.filter(name__in=[SALES_REPS, SALES_MANAGERS]).count() == 2
    assert Group.objects.count() == 3
    assert again[SALES_REPS].pk == groups[SALES_REPS].pk
    assert "nurture.view_touch" in codenames(again[SALES_REPS])


@pytest.mark.django_db
def test_ensure_admin_creates_then_leaves_a_superuser(capsys):
    """The first run creates the superuser, a repeat changes nothing, a new
    password is applied."""
    call_command("ensure_admin", username="boss", password="pw-one-1", email="b@x.io")
    call_command("ensure_admin", username="boss", password="pw-one-1")
    call_command("ensure_admin", username="boss", password="pw-two-2")

    user = get_user_model().objects.get(username="boss")
    assert user.is_superuser and user.is_staff
    assert user.email == "b@x.io"
    assert user.check_password("pw-two-2")
    out = capsys.readouterr().out.splitlines()
    assert out == [
        "superuser boss: created",
        "superuser boss: unchanged",
        "superuser boss: updated",
    ]
