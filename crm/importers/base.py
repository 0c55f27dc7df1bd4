"""What every CSV import shares: reading files, reporting rows, saving batches.

An import reads the whole file first, turns each row into values or a
RowError, then saves the good rows in batches: one ``in`` query finds the
records that already exist, new ones go in with bulk_create and only the
records whose values differ go out with bulk_update. A second run over the
same file therefore writes nothing and counts every row as unchanged.
"""

import csv
import dataclasses
import datetime as dt
import os
import re
from collections.abc import Iterable, Iterator, Sequence
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import TypeVar

from django.conf import settings
from django.db import models

from crm import conf

T = TypeVar("T")

DEFAULT_BATCH_SIZE = 1000

# Bytes that are not UTF-8 come through as lone surrogates
# (errors="surrogateescape"), so a bad row can be found and reported alone.
UNDECODABLE = re.compile("[\udc80-\udcff]")
UTF16_MARKS = (b"\xff\xfe", b"\xfe\xff")

# Numbers beyond this are a broken cell, not a count or an amount.
LARGEST_NUMBER = Decimal(10) ** 15

# Values that exports use for "nothing chosen"; they mean blank everywhere.
PLACEHOLDERS = frozenset({"select"})


class ImportFileError(Exception):
    """The file as a whole cannot be imported (missing, unreadable, no header)."""


class BadValue(ValueError):
    """One cell of one row cannot be used; ``field`` names its column."""

    def __init__(self, field: str, reason: str):
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


@dataclasses.dataclass(frozen=True)
class RowError:
    """A row left out of an import, with the line, column and cause."""

    row_number: int
    field: str
    reason: str

    def __str__(self) -> str:
        return f"row {self.row_number}: {self.field}: {self.reason}"


@dataclasses.dataclass
class ImportReport:
    """What an import did: counts of records, the rows it refused, the time."""

    created: int = 0
    updated: int = 0
    unchanged: int = 0
    errors: list[RowError] = dataclasses.field(default_factory=list)
    # Counts of secondary records, such as events or accounts made on the way.
    details: dict[str, int] = dataclasses.field(default_factory=dict)
    seconds: float = 0.0

    def add_error(self, row_number: int, field: str, reason: str) -> None:
        self.errors.append(RowError(row_number, field, reason))

    def count(self, name: str, amount: int = 1) -> None:
        self.details[name] = self.details.get(name, 0) + amount

    def summary(self) -> str:
        parts = [
            f"created {self.created}",
            f"updated {self.updated}",
            f"unchanged {self.unchanged}",
            f"errors {len(self.errors)}",
        ]
        parts += [f"{name} {value}" for name, value in sorted(self.details.items())]
        return ", ".join(parts)


@dataclasses.dataclass(frozen=True)
class Row:
    """One record of a CSV file and the line it starts on (header = line 1)."""

    number: int
    values: dict[str, str]

    def get(self, column: str) -> str:
        """Return the cell stripped, with placeholders such as Select as blank."""
        value = (self.values.get(column) or "").strip()
        if value.casefold() in PLACEHOLDERS:
            return ""
        return value


def read_rows(
    path: str | os.PathLike,
    *,
    required: Sequence[str] = (),
    report: ImportReport | None = None,
) -> list[Row]:
    """Read a CSV file into rows, or raise ImportFileError.

    The file is decoded as UTF-8 with or without a byte-order mark (UTF-16
    when it starts with a UTF-16 mark); the csv module, given ``newline=""``,
    accepts CRLF, LF and CR line endings and quoted cells that span lines.
    Blank lines are skipped. A row that is not valid text, or has a different
    number of cells than the header, is left out and, when ``report`` is
    given, recorded there with its line number, so one bad row never stops
    the good ones.
    """
    try:
        with open(path, "rb") as raw:
            start = raw.read(2)
        encoding = "utf-16" if start in UTF16_MARKS else "utf-8-sig"
        with open(
            path, encoding=encoding, errors="surrogateescape", newline=""
        ) as handle:
            reader = csv.reader(handle)
            header = next(reader, None)
            if not header:
                raise ImportFileError(f"{path} is empty")
            if any(UNDECODABLE.search(name) for name in header):
                raise ImportFileError(f"{path}: the header is not valid UTF-8 text")
            header = [name.strip() for name in header]
            missing = [name for name in required if name not in header]
            if missing:
                raise ImportFileError(
                    f"{path} lacks the column(s): {', '.join(missing)}"
                )

            rows = []
            last_line = reader.line_num
            for record in reader:
                first_line, last_line = last_line + 1, reader.line_num
                if not any(cell.strip() for cell in record):
                    continue
                problem = row_problem(record, header)
                if problem is not None:
                    if report is not None:
                        report.add_error(first_line, *problem)
                    continue
                rows.append(Row(first_line, dict(zip(header, record, strict=True))))
    except (OSError, UnicodeError, csv.Error) as exc:
        raise ImportFileError(f"cannot read {path}: {exc}") from exc
    return rows


def row_problem(record: list[str], header: list[str]) -> tuple[str, str] | None:
    """Say why a CSV record cannot be read as a row: (column, reason), or None."""
    for name, cell in zip(header, record, strict=False):
        if UNDECODABLE.search(cell):
            return name, "is not valid UTF-8 text; save the file as UTF-8"
    if len(record) != len(header):
        return (
            "(row)",
            f"has {len(record)} cells where the header has {len(header)} columns",
        )
    return None


def data_dir() -> Path:
    """Return the folder of bundled real data the commands read by default."""
    configured = conf.get("CRM_DATA_DIR") or os.environ.get("NURTURE_DATA_DIR")
    if configured:
        return Path(configured)
    return Path(settings.BASE_DIR).parent / "shared" / "data"


def batched(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    """Yield consecutive slices of at most ``size`` items."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


def parse_decimal(
    row: Row, column: str, *, minimum: Decimal | None = 0
) -> Decimal | None:
    """Return the cell as a Decimal, None when blank, or raise BadValue."""
    value = row.get(column)
    if not value:
        return None
    try:
        number = Decimal(value.replace(",", ""))
    except InvalidOperation:
        raise BadValue(column, f"{value!r} is not a number") from None
    if not number.is_finite():
        raise BadValue(column, f"{value!r} is not a number")
    if abs(number) >= LARGEST_NUMBER:
        raise BadValue(column, f"{value!r} is too large")
    if minimum is not None and number < minimum:
        raise BadValue(column, f"{value!r} is below {minimum}")
    return number


def parse_int(row: Row, column: str, *, minimum: int | None = 0) -> int | None:
    """Return the cell as a whole number, None when blank, or raise BadValue."""
    number = parse_decimal(row, column, minimum=minimum)
    if number is None:
        return None
    if number != number.to_integral_value():
        raise BadValue(column, f"{row.get(column)!r} is not a whole number")
    return int(number)


def parse_float(row: Row, column: str, *, minimum: float | None = 0) -> float | None:
    """Return the cell as a float, None when blank, or raise BadValue."""
    number = parse_decimal(row, column, minimum=minimum)
    return None if number is None else float(number)


def parse_yes_no(row: Row, column: str) -> bool | None:
    """Return True for Yes/1, False for No/0, None when blank; else BadValue."""
    value = row.get(column).casefold()
    if not value:
        return None
    if value in {"yes", "y", "true", "1"}:
        return True
    if value in {"no", "n", "false", "0"}:
        return False
    raise BadValue(column, f"{row.get(column)!r} is not yes or no")


def apply_values(obj: models.Model, values: dict) -> list[str]:
    """Set the values that differ on ``obj`` and return the names changed."""
    changed = []
    for name, value in values.items():
        if getattr(obj, name) != value:
            setattr(obj, name, value)
            changed.append(name)
    return changed


def update_changed(
    model: type[models.Model],
    changes: Iterable[tuple[models.Model, list[str]]],
    *,
    now: dt.datetime | None = None,
) -> int:
    """Write only the changed fields of the changed objects in one bulk_update.

    bulk_update skips auto_now, so ``updated_at`` is stamped here, and only
    on the objects that really changed.
    """
    objs, fields = [], set()
    has_updated_at = any(f.name == "updated_at" for f in model._meta.concrete_fields)
    for obj, names in changes:
        if not names:
            continue
        if has_updated_at and now is not None:
            obj.updated_at = now
            names = [*names, "updated_at"]
        objs.append(obj)
        fields.update(names)
    if objs:
        model.objects.bulk_update(objs, sorted(fields))
    return len(objs)
