"""Label files of CONTRACT section 3: the ground truth of a trace, its migrations and benign episodes.

The one owner of the format: ``migwatch eval`` reads it, the lab and the synthetic traces write it.

    >>> labels = Labels(migrations=[MigrationLabel(target="vm-1", start=10.0, end=12.5, downtime_ms=180.0)])
    >>> encode(labels)
    b'{"v":1,"migrations":[{"target":"vm-1","start":10.0,"end":12.5,"downtime_ms":180.0}],"benign":[]}'
    >>> BenignLabel(target="vm-1", start=20.0, end=10.0, kind="pause")
    Traceback (most recent call last):
    ...
    migwatch.contract.fields.FieldError: end: must be >= start (20.0), got 10.0
"""

from __future__ import annotations

import os
from pathlib import Path

import msgspec

from migwatch.contract.codec import decode, encode
from migwatch.contract.fields import FieldError, check_identifier, check_timestamp
from migwatch.contract.records import SCHEMA_VERSION, Record
from migwatch.contract.trace import TraceError

# What a lab's episode was played with (a benign step's settings: seconds, hops, ...), kept beside the label.
Setting = float | int | bool


class MigrationLabel(Record, kw_only=True):
    """A migration from ``start`` (the migration command) to ``end`` (the VM runs on the destination)."""

    target: str
    start: float
    end: float
    downtime_ms: float | None = None
    # Beyond the contract, left out of the JSON unless known: the hypervisors the VM left and reached.
    source: str | msgspec.UnsetType = msgspec.UNSET
    destination: str | msgspec.UnsetType = msgspec.UNSET

    def __post_init__(self) -> None:
        _check_interval(self.target, self.start, self.end)
        for name in ("source", "destination"):
            if getattr(self, name) is not msgspec.UNSET:
                check_identifier(name, getattr(self, name))


class BenignLabel(Record, kw_only=True):
    """Activity that is not a migration: a bulk copy, load, link trouble, a legitimate clock step."""

    target: str
    start: float
    end: float
    kind: str
    settings: dict[str, Setting] | msgspec.UnsetType = msgspec.UNSET  # beyond the contract, as source above

    def __post_init__(self) -> None:
        _check_interval(self.target, self.start, self.end)


def _check_interval(target: str, start: float, end: float) -> None:
    check_identifier("target", target)
    check_timestamp("start", start)
    check_timestamp("end", end)
    if end < start:
        raise FieldError(f"end: must be >= start ({start!r}), got {end!r}")


class Labels(Record, kw_only=True):
    """The ground truth of a trace: its migrations and its benign episodes."""

    v: int = SCHEMA_VERSION
    migrations: list[MigrationLabel] = msgspec.field(default_factory=list)
    benign: list[BenignLabel] = msgspec.field(default_factory=list)


def read_labels(path: str | os.PathLike[str]) -> Labels:
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise TraceError(f"{path}: cannot read: {error.strerror or error}") from None
    try:
        return decode(Labels, raw)
    except FieldError as error:
        raise TraceError(f"{path}: {error}") from None


def write_labels(path: str | os.PathLike[str], labels: Labels) -> None:
    """Write the file whole or not at all: a reader (or a run stopped meanwhile) never sees half of it."""
    path = Path(path)
    scratch = path.with_name(path.name + ".tmp")
    scratch.write_bytes(encode(labels) + b"\n")
    os.replace(scratch, path)
