"""A per-contact cap on touches across every cadence and channel.

NURTURE_FREQUENCY_CAP = {"touches": 3, "days": 7} lets at most three touches
reach a contact in any seven days. A touch over the cap waits until the
oldest counted touch leaves the window; it is never dropped or sent early.
Only touches that reached the contact count: sent emails and rep tasks.
"""

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable

from nurture import conf
from nurture.models import Touch

from .ids import ids_in

COUNTED_STATUSES = (Touch.Status.SENT, Touch.Status.TASK_CREATED)


class FrequencyCap:
    """The recent touches of one batch's contacts, counted as it plans.

    Load it once per batch (one query), then ask ``release_time`` and
    ``record`` per touch in memory.
    """

    def __init__(self, touches: int, days: int, recent: dict[int, list]):
        self.limit = touches
        self.span = dt.timedelta(days=days)
        self.recent = recent

    @classmethod
    def load(cls, contact_ids: Iterable[int], *, now: dt.datetime) -> "FrequencyCap":
        """Read the counted touches of these contacts within the cap's window."""
        setting = conf.get("NURTURE_FREQUENCY_CAP") or {}
        touches, days = setting.get("touches"), setting.get("days")
        recent: dict[int, list] = defaultdict(list)
        if touches and days:
            rows = Touch.objects.filter(
                ids_in("contact_id", contact_ids),
                status__in=COUNTED_STATUSES,
                created_at__gt=now - dt.timedelta(days=days),
            ).values_list("contact_id", "created_at")
            for contact_id, created_at in rows:
                recent[contact_id].append(created_at)
        return cls(touches or 0, days or 0, recent)

    def release_time(self, contact_id: int, now: dt.datetime) -> dt.datetime | None:
        """Return when one more touch may reach the contact, or None for now."""
        if not self.limit:
            return None
        times = sorted(
            t for t in self.recent.get(contact_id, ()) if t > now - self.span
        )
        if len(times) < self.limit:
            return None
        # The touch that must leave the window for the count to drop below
        # the limit; later ones may still be inside it.
        return times[len(times) - self.limit] + self.span

    def record(self, contact_id: int, at: dt.datetime):
        """Count a touch this batch is about to make."""
        if self.limit:
            self.recent[contact_id].append(at)
