"""Import the sales team (sales_teams.csv): reps, their managers, regions."""

import dataclasses
import logging
import os
import time

from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils.text import slugify

from crm.models import Rep
from crm.roles import SALES_MANAGERS, SALES_REPS, ensure_sales_groups

from .base import BadValue, ImportReport, Row, apply_values, read_rows

logger = logging.getLogger(__name__)

AGENT, MANAGER, REGION = "sales_agent", "manager", "regional_office"


@dataclasses.dataclass
class Person:
    """Someone on the team as the file describes them."""

    row_number: int
    name: str
    region: str
    manager: str | None = None  # the manager's username
    is_manager: bool = False

    @property
    def username(self) -> str:
        return slugify(self.name)

    @property
    def group(self) -> str:
        return SALES_MANAGERS if self.is_manager else SALES_REPS


def import_reps(path: str | os.PathLike) -> ImportReport:
    """Create or update a staff user and a Rep for every agent and manager.

    Each rep reports to their manager's Rep; a manager's region is that of
    the reps they manage. Reps join "Sales reps", managers "Sales managers".
    New users get an unusable password; existing users keep theirs.
    """
    started = time.monotonic()
    report = ImportReport()
    rows = read_rows(path, required=(AGENT, MANAGER, REGION), report=report)
    people = collect_people(rows, report)

    with transaction.atomic():
        groups = ensure_sales_groups()
        users = save_users(people)
        reps = save_reps(people, users)
        memberships = save_memberships(people, users, groups)

    # A person counts once: created if their user or Rep is new, updated if
    # anything about them was written, unchanged otherwise.
    for person in people.values():
        key = person.username
        if key in users.created or key in reps.created:
            report.created += 1
        elif key in users.changed or key in reps.changed or key in memberships:
            report.updated += 1
        else:
            report.unchanged += 1
    report.seconds = time.monotonic() - started
    logger.info("Imported reps: %s", report.summary())
    return report


def collect_people(rows: list[Row], report: ImportReport) -> dict[str, Person]:
    """Read agents and managers from the rows; the first mention wins."""
    people: dict[str, Person] = {}
    for row in rows:
        agent, region, manager = row.get(AGENT), row.get(REGION), row.get(MANAGER)
        known = people.get(slugify(agent))
        try:
            if not slugify(agent):
                raise BadValue(AGENT, "is missing")
            if known and (known.manager or not known.is_manager):
                raise BadValue(AGENT, f"is already listed on row {known.row_number}")
        except BadValue as exc:
            report.add_error(row.number, exc.field, exc.reason)
            continue

        boss = None
        if slugify(manager):
            boss = people.setdefault(
                slugify(manager), Person(row.number, manager, region)
            )
            boss.is_manager = True
        if known:
            # A manager who also sells under someone else.
            known.manager = boss.username if boss else None
        else:
            person = Person(row.number, agent, region, boss and boss.username)
            people[person.username] = person
    return people


@dataclasses.dataclass
class Saved:
    """Which keys a step created and which it changed, and the objects."""

    objects: dict
    created: set = dataclasses.field(default_factory=set)
    changed: set = dataclasses.field(default_factory=set)


def save_users(people: dict[str, Person]) -> Saved:
    User = get_user_model()
    saved = Saved(
        {u.username: u for u in User.objects.filter(username__in=list(people))}
    )

    new, changed = [], []
    for username, person in people.items():
        first, _, last = person.name.partition(" ")
        values = {"first_name": first, "last_name": last.strip(), "is_staff": True}
        user = saved.objects.get(username)
        if user is None:
            user = User(username=username, **values)
            user.set_unusable_password()
            new.append(user)
            saved.objects[username] = user
            saved.created.add(username)
        elif apply_values(user, values):
            changed.append(user)
            saved.changed.add(username)
    User.objects.bulk_create(new)
    if changed:
        User.objects.bulk_update(changed, ["first_name", "last_name", "is_staff"])
    return saved


def save_reps(people: dict[str, Person], users: Saved) -> Saved:
    by_user = {
        rep.user_id: rep
        for rep in Rep.objects.filter(user__in=list(users.objects.values()))
    }
    saved = Saved({})
    new = []
    for username, person in people.items():
        user = users.objects[username]
        rep = by_user.get(user.pk)
        if rep is None:
            rep = Rep(user=user, region=person.region)
            new.append(rep)
            saved.created.add(username)
        saved.objects[username] = rep
    Rep.objects.bulk_create(new)

    # Managers now all have a Rep, so reps can point at theirs.
    changed = []
    for username, person in people.items():
        rep = saved.objects[username]
        manager = saved.objects[person.manager] if person.manager else None
        values = {
            "region": person.region,
            "manager_id": manager.pk if manager else None,
        }
        if apply_values(rep, values):
            changed.append(rep)
            if username not in saved.created:
                saved.changed.add(username)
    if changed:
        Rep.objects.bulk_update(changed, ["region", "manager"])
    return saved


def save_memberships(people: dict[str, Person], users: Saved, groups: dict) -> set:
    """Add each person to their sales group; return who was added."""
    Membership = get_user_model().groups.through
    user_ids = [user.pk for user in users.objects.values()]
    group_ids = [group.pk for group in groups.values()]
    present = set(
        Membership.objects.filter(
            user_id__in=user_ids, group_id__in=group_ids
        ).values_list("user_id", "group_id")
    )

    added, new = set(), []
    for username, person in people.items():
        pair = (users.objects[username].pk, groups[person.group].pk)
        if pair not in present:
            new.append(Membership(user_id=pair[0], group_id=pair[1]))
            added.add(username)
    Membership.objects.bulk_create(new)
    return added
