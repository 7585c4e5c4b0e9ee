"""Which hypervisors a VM moved between, from the hypervisors' own pings.

A live migration's memory stream leaves the source hypervisor and enters the destination: when they are
watched (``kind = "host"`` targets, listed in the VM's ``hosts``), the source's pings show the ping pattern
while the VM's do (in the lab the destination's often do not: the stream queues on the way out). A VM also
answers from beside its hypervisor: its lowest RTT is its host's, plus a little. ``name_hosts`` names them
from what each allowed host showed (:class:`HostView`, from the host's detectors in this process or from
another worker's report):

- the **source** is the host the VM was last seen on, when it showed the stream; otherwise the one whose
  lowest RTT is within ``clear_ms`` of the VM's before the move and clearly nearest; otherwise the only one
  that showed it, unless its RTT is clearly not the VM's (then it is where the VM went, from where it was
  last seen);
- the **destination** is the other allowed host that showed the stream, when there is exactly one; or,
  once the moved VM's round trip has settled, the one other allowed host whose lowest RTT is the VM's new one;
- the destination is **not allowed** when the VM settled at a round trip that is no allowed host's (every
  allowed host watched): it answers from somewhere it may not run. That a host showed no stream proves
  nothing (see above); two allowed hosts that showed it are a move between them, allowed, even when which
  is which cannot be told.

    >>> views = {"hv-1": HostView(pattern_last_ts=100.0, floor_ms=0.2),
    ...          "hv-2": HostView(pattern_last_ts=101.0, floor_ms=15.1)}
    >>> name_hosts(["hv-1", "hv-2"], views, ts=102.0, last_seen=None, vm_floor_ms=0.4, window_s=30.0, clear_ms=1.0)
    HostNames(source='hv-1', destination='hv-2', destination_allowed=True, seen=('hv-1', 'hv-2'))
    >>> views["hv-2"] = HostView(pattern_last_ts=None, floor_ms=15.1)       # hv-2 shows no stream ...
    >>> name_hosts(["hv-1", "hv-2"], views, ts=102.0, last_seen="hv-1", vm_floor_ms=0.4, window_s=30.0, clear_ms=1.0)
    HostNames(source='hv-1', seen=('hv-1',))
    >>> name_hosts(["hv-1", "hv-2"], views, ts=102.0, last_seen="hv-1", vm_floor_ms=0.4, window_s=30.0,
    ...            clear_ms=1.0, vm_after_ms=15.3)                         # ... the VM settled at its RTT
    HostNames(source='hv-1', destination='hv-2', destination_allowed=True, seen=('hv-1',))
    >>> name_hosts(["hv-1", "hv-2"], views, ts=102.0, last_seen="hv-1", vm_floor_ms=0.4, window_s=30.0,
    ...            clear_ms=1.0, vm_after_ms=40.2)                         # ... at no allowed host's
    HostNames(source='hv-1', destination_allowed=False, seen=('hv-1',))
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import msgspec

from migwatch.contract.records import HostView


class HostNames(msgspec.Struct, frozen=True, omit_defaults=True, repr_omit_defaults=True):
    """The hypervisors of a move, as far as they are known (a fusion keeps its episode's in its state)."""

    source: str | None = None
    destination: str | None = None
    destination_allowed: bool | None = None
    seen: tuple[str, ...] = ()  # the allowed hosts that showed the stream
    streaming: tuple[str, ...] = ()  # the allowed hosts whose own round trip shows a memory copy now (issue #20)
    shared: tuple[str, ...] = ()  # ... and those whose copy another VM of theirs shows too: it may be any of theirs


NO_HOSTS = HostNames()


def name_hosts(
    allowed: Sequence[str],
    views: Mapping[str, HostView],
    *,
    ts: float,
    last_seen: str | None,
    vm_floor_ms: float | None,
    window_s: float,
    clear_ms: float,
    vm_after_ms: float | None = None,
) -> HostNames:
    """The source and destination among the ``allowed`` hosts at event time ``ts``; ``vm_after_ms`` is the
    VM's lowest RTT once settled after the move, when known."""
    showing = [
        host
        for host in allowed
        if (view := views.get(host)) is not None
        and view.pattern_last_ts is not None
        and abs(ts - view.pattern_last_ts) <= window_s
    ]
    seen = tuple(showing)
    source = last_seen if last_seen in showing else _nearest(showing, views, vm_floor_ms, clear_ms)
    if source is None and len(showing) == 1:
        floor = views[showing[0]].floor_ms
        if vm_floor_ms is not None and floor is not None and abs(floor - vm_floor_ms) > clear_ms:
            return HostNames(last_seen, showing[0], True, seen)
        source = showing[0]
    others = [host for host in showing if host != source]
    if source is not None and len(others) == 1:
        return HostNames(source, others[0], True, seen)
    if vm_after_ms is not None:
        candidates = [host for host in allowed if host != source]
        there = _nearest(candidates, {h: views[h] for h in candidates if h in views}, vm_after_ms, clear_ms)
        if there is not None:
            return HostNames(source, there, True, seen)
        floors = [views[host].floor_ms for host in candidates if host in views]
        if len(floors) == len(candidates) and all(
            floor is not None and abs(floor - vm_after_ms) > clear_ms for floor in floors
        ):
            return HostNames(source, None, False, seen)
    if source is None and len(showing) == 2:
        return HostNames(None, None, True, seen)
    return HostNames(source, None, None, seen) if showing else NO_HOSTS


def streaming(
    allowed: Sequence[str], views: Mapping[str, HostView], *, ts: float, copy_min_s: float, recent_s: float
) -> tuple[str, ...]:
    """The allowed hosts whose own mean round trip has been up for ``copy_min_s`` or more, lately (within
    ``recent_s`` of ``ts``): a memory copy leaving (or entering) them, not a blip of a couple of slow replies.

    >>> views = {"hv-1": HostView(copy_first_ts=80.0, copy_last_ts=99.0), "hv-2": HostView(pattern_last_ts=99.0)}
    >>> streaming(["hv-1", "hv-2"], views, ts=100.0, copy_min_s=1.0, recent_s=20.0)
    ('hv-1',)
    """
    return tuple(
        host
        for host in allowed
        if (view := views.get(host)) is not None
        and view.copy_first_ts is not None
        and view.copy_last_ts is not None
        and view.copy_last_ts - view.copy_first_ts >= copy_min_s
        and 0.0 <= ts - view.copy_last_ts <= recent_s
    )


def _nearest(
    showing: Sequence[str], views: Mapping[str, HostView], vm_floor_ms: float | None, clear_ms: float
) -> str | None:
    """The host whose lowest RTT is within ``clear_ms`` of the VM's, and nearer than any other by as much."""
    if vm_floor_ms is None:
        return None
    distances = sorted(
        (abs(floor - vm_floor_ms), host)
        for host in showing
        if host in views and (floor := views[host].floor_ms) is not None
    )
    if not distances or distances[0][0] > clear_ms:
        return None
    if len(distances) > 1 and distances[1][0] - distances[0][0] < clear_ms:
        return None
    return distances[0][1]
