"""Calendar arithmetic for step waits."""

import datetime as dt

from nurture.models import Step


def add_wait(start: dt.datetime, amount: int, unit: str) -> dt.datetime:
    """Return the moment ``amount`` hours, days or business days after start."""
    if unit == Step.WaitUnit.HOURS:
        return start + dt.timedelta(hours=amount)
    if unit == Step.WaitUnit.DAYS:
        return start + dt.timedelta(days=amount)

    # Business days: count Monday to Friday only.
    moment = start
    remaining = amount
    while remaining > 0:
        moment += dt.timedelta(days=1)
        if moment.isoweekday() <= 5:
            remaining -= 1
    return moment


def step_due_at(step: Step, after: dt.datetime) -> dt.datetime:
    """Return when ``step`` falls due if the previous one ran at ``after``."""
    return add_wait(after, step.wait_amount, step.wait_unit)
