"""Run the engine over simulated days and print the resulting funnel."""

import datetime as dt
import time

from django.core.management.base import BaseCommand
from django.utils import timezone

from nurture.simulation import Behaviour, Simulation, funnel_report


class Command(BaseCommand):
    help = (
        "Run dispatch, scoring, handoffs and SLA sweeps over N simulated days "
        "with simulated contacts and reps, then print the funnel."
    )

    def add_arguments(self, parser):
        parser.add_argument("--days", type=int, default=30)
        parser.add_argument("--seed", type=int, default=7)
        parser.add_argument(
            "--start",
            help="ISO date-time the simulated clock starts at (default: now).",
        )
        parser.add_argument(
            "--accept-in-time",
            type=float,
            default=Behaviour.handoff_in_time,
            help="Share of handoffs reps act on inside the SLA.",
        )

    def handle(self, *args, days, seed, start, accept_in_time, **options):
        begin = parse_start(start) if start else timezone.now()
        behaviour = Behaviour(handoff_in_time=accept_in_time)

        self.stdout.write(f"Simulating {days} days from {begin:%Y-%m-%d %H:%M} UTC")
        clock = time.perf_counter()
        result = Simulation(
            start=begin, days=days, seed=seed, behaviour=behaviour
        ).run()
        elapsed = time.perf_counter() - clock

        self.stdout.write(
            f"{result.ticks} hourly ticks in {elapsed:.1f} s; "
            f"{result.enrolled} active enrollments at the start; "
            f"{result.emails_built} emails built (kept in memory, not sent); "
            f"{result.events_ingested} simulated events; "
            f"{result.events_scored} events scored; "
            f"{result.sla_breaches} SLA breaches escalated"
        )
        self.print_funnel(funnel_report())

    def print_funnel(self, report: dict) -> None:
        write = self.stdout.write
        write("\nContacts by lifecycle stage")
        for stage, n in sorted(report["stages"].items(), key=lambda kv: -kv[1]):
            write(f"  {stage:<14} {n:>7,}")
        write("\nEnrollments by state")
        for state, n in sorted(report["enrollments"].items()):
            write(f"  {state:<14} {n:>7,}")
        write("\nTouches by channel and status")
        for (channel, status), n in sorted(report["touches"].items()):
            write(f"  {channel:<12} {status:<14} {n:>7,}")
        tasks = report["tasks"]
        write(f"\nTasks: {tasks['created']:,} created, {tasks['done']:,} done")
        h = report["handoffs"]
        write(
            f"Handoffs: {h['created']:,} created, {h['accepted']:,} accepted, "
            f"{h['rejected']:,} rejected, {h['breached']:,} breached SLA, "
            f"{h['open']:,} still open"
        )
        write("\nConversion (the source file's Converted column, held out)")
        for label, key in (
            ("all imported leads (base)", "base"),
            ("handed off to sales", "handed_off"),
            ("not handed off", "not_handed_off"),
        ):
            row = report["conversion"][key]
            shown = f"{row['rate']:.1%}" if row["rate"] is not None else "n/a"
            write(f"  {label:<28} {shown:>7}  ({row['converted']:,} of {row['n']:,})")


def parse_start(value: str) -> dt.datetime:
    moment = dt.datetime.fromisoformat(value)
    if timezone.is_naive(moment):
        moment = moment.replace(tzinfo=dt.UTC)
    return moment
