"""Maintenance windows ("silences"): when the migrations of some targets are planned, and where to.

Most live migrations in a data center are planned (maintenance, load balancing). A ``Silence`` declares a
window of time and the targets it covers — by id, by site, or by labels (all of them must match) — and,
when known, the hosts the targets may move to. A migration alert inside a window of its target becomes
``migwatch.outcome: expected`` with low severity, unless it went where it may not (to a host not allowed,
not the planned one, or a relocation to another round trip): that keeps its full severity.

Silences come from the config (``[[silences]]``) and from the compacted ``silences`` topic (key: the id;
a null value removes one; ``migwatch silences add|list|remove|import``). A platform's own planned moves,
one JSON line each (``{"target": "web-01", "from": "hv-1", "to": "hv-2", "window": {"start": ..., "end":
...}}``), become silences through :func:`from_planned_move`.

    >>> window = Silence(id="patch-tue", start=1000.0, end=4600.0, sites=["fra-1"], reason="kernel updates")
    >>> window.covers("web-01", "fra-1", {}, 2000.0), window.covers("web-01", "ams-1", {}, 2000.0)
    (True, False)
    >>> Silence(id="x", start=10.0, end=20.0)
    Traceback (most recent call last):
    ...
    migwatch.contract.fields.FieldError: targets: a silence must select targets by targets, sites or labels, got []
"""

from __future__ import annotations

from datetime import datetime

import msgspec

from migwatch.contract.fields import FieldError, check_identifier, check_timestamp, fail

MAX_WINDOW_S = 31 * 86_400.0  # a month: longer is not maintenance but an exception, and should say so


class Silence(msgspec.Struct, kw_only=True):
    """A maintenance window: ``start``/``end`` UNIX seconds; selectors ``targets``, ``sites``, ``labels``."""

    v: int = 1
    id: str
    start: float
    end: float
    targets: list[str] = []
    sites: list[str] = []
    labels: dict[str, str] = {}
    to_hosts: list[str] = []  # where the targets may move to in the window (empty: any allowed host)
    reason: str = ""
    by: str = ""

    def __post_init__(self) -> None:
        check_identifier("id", self.id)
        check_timestamp("start", self.start)
        check_timestamp("end", self.end)
        if self.end <= self.start:
            fail("end", f"must be after start ({self.start!r})", self.end)
        if self.end - self.start > MAX_WINDOW_S:
            fail("end", f"must be at most 31 days after start ({self.start!r})", self.end)
        if not (self.targets or self.sites or self.labels):
            fail("targets", "a silence must select targets by targets, sites or labels", self.targets)
        for name in ("targets", "sites", "to_hosts"):
            for i, value in enumerate(getattr(self, name)):
                check_identifier(f"{name}[{i}]", value)

    def covers(self, target: str, site: str | None, labels: dict[str, str], ts: float) -> bool:
        """Whether the window holds ``ts`` and selects this target (any selector that is set must match)."""
        if not self.start <= ts <= self.end:
            return False
        if self.targets and target not in self.targets:
            return False
        if self.sites and site not in self.sites:
            return False
        return all(labels.get(key) == value for key, value in self.labels.items())


class _Window(msgspec.Struct, forbid_unknown_fields=True):
    start: float | str
    end: float | str


class PlannedMove(msgspec.Struct, forbid_unknown_fields=True, rename={"source": "from", "destination": "to"}):
    """One line of a platform's planned migrations."""

    target: str
    window: _Window
    source: str | None = None
    destination: str | None = None


def from_planned_move(move: PlannedMove, by: str = "planned-moves") -> Silence:
    """The silence of one planned move: its target, its window, its destination (times as UNIX seconds or
    ISO 8601).

        >>> move = msgspec.json.decode(b'{"target": "web-01", "from": "hv-1", "to": "hv-2",'
        ...     b' "window": {"start": "2026-12-02T22:00:00Z", "end": "2026-12-02T23:00:00Z"}}', type=PlannedMove)
        >>> silence = from_planned_move(move)
        >>> silence.id, silence.targets, silence.to_hosts, silence.end - silence.start
        ('plan-web-01-1796248800', ['web-01'], ['hv-2'], 3600.0)
    """
    start, end = seconds("window.start", move.window.start), seconds("window.end", move.window.end)
    route = f"{move.source or '?'} -> {move.destination or '?'}"
    return Silence(
        id=f"plan-{move.target}-{start:.0f}", start=start, end=end, targets=[move.target],
        to_hosts=[move.destination] if move.destination else [], reason=f"planned move {route}", by=by,
    )  # fmt: skip


def seconds(name: str, value: float | str) -> float:
    if isinstance(value, int | float):
        return float(value)
    try:
        return float(value)  # UNIX seconds, as typed on a command line
    except ValueError:
        pass
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise FieldError(f"{name}: must be UNIX seconds or an ISO 8601 time, got {value!r}") from None
    if when.tzinfo is None:  # the machine's zone would be a guess
        raise FieldError(f"{name}: must name its time zone (Z or +hh:mm), got {value!r}")
    return when.timestamp()
