"""The fleet page's view of every target (issue #22): sorted by risk, searched, filtered, counted and paged.

Every worker tells the statuses of its own targets to the compacted ``status`` topic and follows that topic
whole, so whichever worker serves the page answers for the whole fleet; ``migwatch watch`` answers from its
own detectors. Only one page of rows leaves the server, so a refresh costs the same at 100 or 100,000 VMs.

    >>> from migwatch.contract.records import TargetStatus
    >>> fleet = FleetView()
    >>> statuses = {s.target: s for s in [
    ...     TargetStatus(target="web-01", address="192.0.2.10", kind="vm", site="fra", state="none"),
    ...     TargetStatus(target="db-01", address="192.0.2.11", kind="vm", site="ams", state="likely", likelihood=0.8),
    ...     TargetStatus(target="hv-1", address="192.0.2.1", kind="host", site="fra")]}
    >>> answer = fleet.answer(statuses, FleetQuery())
    >>> [row["target"] for row in answer["rows"]], answer["counts"]
    (['db-01', 'web-01'], {'confirmed': 0, 'likely': 1, 'suspected': 0, 'none': 1})
    >>> [row["target"] for row in fleet.answer(statuses, FleetQuery(kind="host"))["rows"]]
    ['hv-1']
    >>> fleet.answer(statuses, FleetQuery.of({"q": "FRA"}))["matched"]
    1
    >>> FleetQuery.of({"state": "lost"})
    Traceback (most recent call last):
    ...
    migwatch.contract.fields.FieldError: state: must be one of none, suspected, likely, confirmed, got 'lost'
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Literal

import msgspec

from migwatch.contract.fields import FieldError, fail
from migwatch.contract.records import STATUS_STATES, StatusChunk, TargetStatus

# Most alarming first: the order of the page and of its counts.
RISK_ORDER = tuple(reversed(STATUS_STATES))
_RANK = {state: rank for rank, state in enumerate(RISK_ORDER)}
PER_PAGE = 50
MAX_PER_PAGE = 500


class FleetQuery(msgspec.Struct, kw_only=True, frozen=True):
    """What the page asks: VMs or hypervisors, a search text, a state and a site, and which page of rows."""

    kind: Literal["vm", "host"] = "vm"
    q: str = ""  # a part of the id, address, site or a label (key=value or value), any case
    state: str = ""
    site: str = ""
    page: int = 0
    per_page: int = PER_PAGE

    @classmethod
    def of(cls, params: Mapping[str, str]) -> FleetQuery:
        """The query of a request's parameters; FieldError naming the bad one."""
        kind = params.get("kind", "vm")
        if kind not in ("vm", "host"):
            fail("kind", "must be vm or host", kind)
        state = params.get("state", "")
        if state and state not in STATUS_STATES:
            fail("state", f"must be one of {', '.join(STATUS_STATES)}", state)
        numbers = {}
        for name, low, high, default in (("page", 0, 10**6, 0), ("per_page", 1, MAX_PER_PAGE, PER_PAGE)):
            raw = params.get(name, str(default))
            try:
                numbers[name] = int(raw)
            except ValueError:
                raise FieldError(f"{name}: must be a whole number, got {raw!r}") from None
            if not low <= numbers[name] <= high:
                fail(name, f"must be between {low} and {high}", numbers[name])
        return cls(kind=kind, q=params.get("q", "").strip().lower(), state=state, site=params.get("site", ""),
                   **numbers)  # fmt: skip


class FleetStatuses:
    """Every target's status by id, from the status topic's chunks (``chunks``: the table a follower keeps,
    replaced whole when it changes), one mapping for as long as they do not change, so that FleetView keeps
    its sorted order; without chunks (a test, ``migwatch watch``), ``own()``: this process's targets."""

    def __init__(
        self, chunks: Callable[[], Mapping[str, StatusChunk]] | None, own: Callable[[], list[TargetStatus]]
    ) -> None:
        self.chunks, self.own = chunks, own
        self._from: Mapping[str, StatusChunk] | None = None
        self._statuses: dict[str, TargetStatus] = {}

    def __call__(self) -> Mapping[str, TargetStatus]:
        if self.chunks is None:
            return {status.target: status for status in self.own()}
        chunks = self.chunks()
        if chunks is not self._from:
            self._statuses = {status.target: status for chunk in chunks.values() for status in chunk.statuses}
            self._from = chunks
        return self._statuses


class FleetView:
    """``answer(statuses, query)``: the counts per state, the sites, and one page of rows sorted by risk
    (state, then likelihood, then id). What does not depend on the query (the sorted VMs and hypervisors,
    their counts and sites, the search text of each) is kept until ``statuses`` is another mapping (the status
    topic's table is replaced whole when it changes): refreshing, paging and searching do not sort again."""

    def __init__(self) -> None:
        self._source: Mapping[str, TargetStatus] | None = None
        self._kinds: dict[str, list[TargetStatus]] = {}
        self._counts: dict[str, dict[str, int]] = {}
        self._sites: dict[str, list[str]] = {}
        self._text: dict[str, str] = {}  # target -> what a search looks in, built at the first search

    def _index(self, statuses: Mapping[str, TargetStatus]) -> None:
        if statuses is self._source:
            return
        self._kinds = {"vm": [], "host": []}
        for status in sorted(statuses.values(), key=_risk):
            self._kinds["host" if status.kind == "host" else "vm"].append(status)
        self._counts, self._sites = {}, {}
        for kind, members in self._kinds.items():
            counts = self._counts[kind] = dict.fromkeys(RISK_ORDER, 0)
            for status in members:
                counts[status.state] += 1
            self._sites[kind] = sorted({s.site for s in members if s.site})
        self._text = {}
        self._source = statuses

    def answer(self, statuses: Mapping[str, TargetStatus], query: FleetQuery) -> dict[str, Any]:
        self._index(statuses)
        of_kind = self._kinds[query.kind]
        matched = (
            of_kind if not (query.q or query.state or query.site) else [s for s in of_kind if self._matches(s, query)]
        )
        first = query.page * query.per_page
        return {
            "kind": query.kind,
            "counts": self._counts[query.kind],
            "kinds": {kind: len(members) for kind, members in self._kinds.items()},
            "sites": self._sites[query.kind],
            "matched": len(matched),
            "page": query.page,
            "per_page": query.per_page,
            "rows": [msgspec.to_builtins(s) for s in matched[first : first + query.per_page]],
        }

    def _matches(self, status: TargetStatus, query: FleetQuery) -> bool:
        if (query.state and status.state != query.state) or (query.site and status.site != query.site):
            return False
        if not query.q:
            return True
        text = self._text.get(status.target)
        if text is None:
            labels = " ".join(f"{key}={value}" for key, value in status.labels.items())
            text = self._text[status.target] = f"{status.target} {status.address} {status.site or ''} {labels}".lower()
        return query.q in text


def _risk(status: TargetStatus) -> tuple[int, float, str]:
    return _RANK.get(status.state, len(RISK_ORDER)), -status.likelihood, status.target
