"""Ingest engagement events through the API's service, rescoring as it goes.

    .venv/bin/python bench/ingest_events.py --events 100000
    .venv/bin/python bench/ingest_events.py --events 1000000 --database postgres

Builds a scratch database of its own (a temp SQLite file, or a PostgreSQL
database created and dropped on 127.0.0.1), loads the default programme and
a pool of contacts, then feeds events in API-sized batches through
nurture.services.engagement.ingest_events, calling rescore_new_events after
every batch as the rescoring task would. Prints events per second over the
services' own time and over the wall clock, and statements plus commits
per thousand events (an executemany counts once).

With ``--reps N`` the default catch-all region gets N reps with room for
every lead, so each new MQL is handed off (context, task, owner, exits,
email) instead of waiting for a rep.

Measured on the 2-core CI-class machine, which here stores about 8,600
bare event rows per second through bulk_create (300k rows), SQLite first:
- 1M events (50,000 contacts, 28,628 of them qualified on the way): 5,272
  events/s over the services' own time (5,149 counting the bench building
  its rows), 26.7 queries per 1,000 events; two earlier runs of this work,
  before the key check moved into the insert, gave 5,127 and 5,209. Last
  run: ingest 45.4 s, rescore 144.3 s, 95.5 s of it in SQL, of which
  COMMIT 53 s (each batch rewrites about a thousand scattered contact and
  score rows and inserts into the events' timeline index), the event
  INSERT 16 s, the score upsert 9.7 s and the contact mirror 9.5 s.
- Same machine, same 1M run before this work: 2,440/s. What moved it:
  events inserted with raw multi-row statements, one redundant index
  dropped and keys checked by the insert itself (ingest 180 s to 45 s);
  intent explained per rule instead of the last twenty hits (less JSON
  to decode and encode, twice); raw reads of scores and events;
  qualification looking contacts up by id instead of walking the stage
  index; SQLite checkpoints every 40 MB with a 64 MB cache and a 256 MB
  map; and counting queries with an execute wrapper rather than Django's
  query log, which on SQLite re-quoted every parameter with extra queries.
- PostgreSQL, 1M events: 1,963 events/s over the services' time (1,935
  wall), 23.7 queries per 1,000 events; ingest 105 s, rescore 405 s, SQL
  405 s. Up from 1,377/s once the duplicate-key check stopped asking first
  (PostgreSQL had planned it as a scan of every stored event, 191 s of the
  run). What is left is the server: the contact mirror and score upsert
  (95 and 80 ms per batch of a thousand rows), the event insert, and the
  unscored-event read, which walks index entries of events already scored
  until autovacuum clears them.
"""

import argparse
import datetime as dt
import os
import random
import signal
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PG_ADMIN_URL = "postgres://postgres@127.0.0.1:5432/postgres"

# Event mix shaped like web and email tracking: mostly views and opens.
EVENT_MIX = [
    ("page_view", 50),
    ("email_open", 20),
    ("email_click", 10),
    ("web_activity", 10),
    ("pricing_visit", 5),
    ("form_submit", 4),
    ("content_download", 1),
]


PAGES = ["/", "/courses", "/pricing", "/blog/how-to-choose", "/contact"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--contacts", type=int, default=50_000)
    parser.add_argument("--batch", type=int, default=1000, help="events per call")
    parser.add_argument(
        "--rescore-every", type=int, default=1, help="batches between rescorings"
    )
    parser.add_argument("--database", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument(
        "--reps",
        type=int,
        default=0,
        help="Central reps with room for every lead, so each MQL gets a handoff",
    )
    args = parser.parse_args()
    if args.events < args.batch or args.events % args.batch:
        parser.error(f"--events must be a multiple of --batch ({args.batch})")

    scratch = _scratch_database(args.database)
    # A stopped run (SIGTERM, as from a CI timeout) cleans up as Ctrl-C does.
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        _run(args)
    finally:
        scratch()


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def _scratch_database(kind: str):
    """Point DATABASE_URL at a new empty database; return its cleanup."""
    if kind == "sqlite":
        folder = tempfile.mkdtemp(prefix="bench-ingest-")
        os.environ["DATABASE_URL"] = f"sqlite:///{folder}/bench.sqlite3"
        return lambda: _remove_tree(folder)

    import psycopg

    name = f"bench_ingest_{os.getpid()}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    os.environ["DATABASE_URL"] = f"postgres://postgres@127.0.0.1:5432/{name}"

    def drop():
        from django.db import connections

        connections.close_all()
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    return drop


def _remove_tree(folder: str) -> None:
    for path in Path(folder).iterdir():
        path.unlink()
    Path(folder).rmdir()


def _run(args) -> None:
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.base")
    # Handoff emails are composed and sent to nowhere, not written to var/.
    os.environ["DJANGO_EMAIL_BACKEND"] = "django.core.mail.backends.dummy.EmailBackend"
    import logging

    import django

    django.setup()
    logging.disable(logging.INFO)

    from django.core.management import call_command
    from django.db import connection

    from crm.models import Contact, EngagementEvent, Rep
    from nurture.models import ContactScore, Handoff
    from nurture.services.engagement import ingest_events
    from nurture.services.programme import ensure_default_programme
    from nurture.services.scoring import rescore_new_events

    call_command("migrate", verbosity=0)
    ensure_default_programme()
    Contact.objects.bulk_create(
        (
            Contact(email=f"bench{i}@example.com", occupation="Student")
            for i in range(args.contacts)
        ),
        batch_size=2000,
    )
    contact_ids = list(Contact.objects.values_list("pk", flat=True))
    _add_reps(args.reps, Rep)

    rng = random.Random(7)
    types = [t for t, _ in EVENT_MIX]
    weights = [w for _, w in EVENT_MIX]
    start = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)

    ingested = 0
    ingest_seconds = rescore_seconds = 0.0
    batches = args.events // args.batch
    meter = SqlMeter(connection)
    profiler = None
    if os.environ.get("BENCH_PROFILE"):
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
    meter.start()
    began = time.perf_counter()
    for number in range(batches):
        now = start + dt.timedelta(seconds=number * 10)
        rows = [
            {
                "contact": rng.choice(contact_ids),
                "type": rng.choices(types, weights)[0],
                "occurred_at": now,
                "source": "bench",
                "external_id": f"bench-{number}-{i}",
                "properties": {
                    "url": rng.choice(PAGES),
                    "seconds_on_site": int(rng.expovariate(1 / 120)),
                },
            }
            for i in range(args.batch)
        ]
        mark = time.perf_counter()
        ingested += len(ingest_events(rows, now=now).created)
        ingest_seconds += time.perf_counter() - mark
        if (number + 1) % args.rescore_every == 0 or number + 1 == batches:
            mark = time.perf_counter()
            # Like the rescoring task: go on while batches come back full.
            size = args.batch * 2
            while rescore_new_events(now=now, batch_size=size) == size:
                pass
            rescore_seconds += time.perf_counter() - mark
        if (number + 1) % 100 == 0:
            elapsed = time.perf_counter() - began
            print(f"  {ingested:>9} events  {ingested / elapsed:8.0f}/s", flush=True)
    elapsed = time.perf_counter() - began
    meter.stop()
    if profiler is not None:
        import pstats

        profiler.disable()
        pstats.Stats(profiler).sort_stats("tottime").print_stats(25)

    unscored = EngagementEvent.objects.unscored().count()
    if os.environ.get("BENCH_SLOW_SQL"):
        slow = sorted(meter.seconds.items(), key=lambda kv: -kv[1])[:8]
        for sql, seconds in slow:
            print(f"{seconds:6.2f}s  {sql}")
    print(f"database:           {connection.vendor}")
    print(f"events ingested:    {ingested} in batches of {args.batch}")
    print(f"contacts:           {args.contacts}")
    print(f"scores stored:      {ContactScore.objects.count()}")
    print(f"left unscored:      {unscored}")
    print(f"MQLs:               {Contact.objects.filter(mql_at__isnull=False).count()}")
    print(f"handoffs:           {Handoff.objects.count()} to {args.reps} reps")
    print(
        f"seconds:            {elapsed:.1f} (ingest {ingest_seconds:.1f}, "
        f"rescore {rescore_seconds:.1f})"
    )
    service = ingest_seconds + rescore_seconds
    print(f"events per second:  {ingested / service:.0f} in the services")
    print(f"  with the bench:   {ingested / elapsed:.0f} (building the rows too)")
    print(f"seconds in SQL:     {sum(meter.seconds.values()):.1f}")
    print(f"queries per 1000:   {meter.count / ingested * 1000:.1f}")


class SqlMeter:
    """Count and time statements and commits, by the first words of the SQL.

    Django's query log (DEBUG or force_debug_cursor) would also do it, but
    on SQLite it rebuilds every statement with its parameters quoted by
    extra queries, which cost the bench more than some statements did.
    """

    def __init__(self, connection):
        self.connection = connection
        self.count = 0
        self.seconds: dict[str, float] = {}
        self._wrapper = None

    def __call__(self, execute, sql, params, many, context):
        began = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            self._add(("executemany: " if many else "") + sql[:80], began)

    def start(self) -> None:
        self.connection.ensure_connection()
        self._wrapper = self.connection.execute_wrapper(self)
        self._wrapper.__enter__()
        commit = self.connection._commit

        def timed_commit():
            began = time.perf_counter()
            try:
                return commit()
            finally:
                self._add("COMMIT", began)

        self.connection._commit = timed_commit

    def stop(self) -> None:
        self._wrapper.__exit__(None, None, None)
        del self.connection._commit

    def _add(self, key: str, began: float) -> None:
        self.count += 1
        self.seconds[key] = self.seconds.get(key, 0.0) + time.perf_counter() - began


def _add_reps(count: int, rep_model) -> None:
    """Create reps in the region the default catch-all rule routes to."""
    from django.contrib.auth import get_user_model

    for number in range(count):
        user = get_user_model().objects.create(
            username=f"bench-rep-{number}", email=f"rep{number}@example.com"
        )
        rep_model.objects.create(user=user, region="Central", capacity=10**7)


if __name__ == "__main__":
    main()
