"""What a clock lag was: a live migration, or one of its look-alikes, named for a SOC on their own.

A VM's clock lags the probe's after anything that stopped it, and a guest can step its own clock back. The
paper's method takes every lag for a migration; what separates them is what the pings saw meanwhile
(:class:`~migwatch.detectors.outage.Outage`) and whether a memory copy came first:

| kind | the lag against the pings |
|---|---|
| ``vm-clock-step`` | longer than any stop the pings allow: the VM answered all along, its clock stepped |
| ``vm-rebooted`` | after a stop of ``reboot_min_s`` or more, and not about as long: the clock did not stand still,
  it started afresh |
| ``vm-paused`` | about a stop the pings show, both ``pause_min_s`` or more, with no memory copy (the VM's mean
  RTT raised) going on as it began |
| ``vm-live-migration`` | anything else: a stop the pings could hide (a fast migration's tens of ms), or one after a
  copy |

A migration whose stop is long and whose copy left no trace looks exactly like a pause: it is named one.
``migwatch eval`` reports that confusion (``confusion``) rather than hiding it.

    >>> from migwatch.detectors.outage import Outage
    >>> def pings(longest_s):                     # 1 Hz pings, a reply 0.5 s ago
    ...     return Outage(longest_s=longest_s, gaps=[1.0] * 5, stop_ts=100.0, reply_ts=130.0)
    >>> kind_of_lag(-1030.0, 130.5, pings(1.001), copy_before=False)     # all answered, the clock stepped back
    'vm-clock-step'
    >>> kind_of_lag(-2000.0, 130.5, pings(2.63), copy_before=False)      # stopped 2 s, nothing copied before
    'vm-paused'
    >>> kind_of_lag(-600.0, 130.5, pings(1.9), copy_before=True)         # the stop-and-copy after a memory copy
    'vm-live-migration'
    >>> kind_of_lag(-33.0, 130.5, pings(1.0), copy_before=False)         # a fast migration: the pings hide its stop
    'vm-live-migration'
    >>> kind_of_lag(-103.0, 130.5, pings(2.0), copy_before=False)        # one ping lost to a 0.1 s stop: no pause
    'vm-live-migration'
    >>> kind_of_lag(-700.0, 130.5, pings(17.0), copy_before=False)       # 17 s without an answer, then a fresh clock
    'vm-rebooted'
    >>> kind_of_lag(-1030.0, 130.5, Outage(), copy_before=False)          # nobody pings it: the lag is a move
    'vm-live-migration'
"""

from __future__ import annotations

from typing import Literal

from migwatch.contract.detector_settings import DEFAULTS, DetectorSettings
from migwatch.detectors.outage import Outage

LagKind = Literal["vm-live-migration", "vm-paused", "vm-clock-step", "vm-rebooted"]
MIGRATION: LagKind = "vm-live-migration"
# What a SOC makes of each look-alike: a hypervisor pausing a VM is worth a look, the rest is information.
SEVERITY = {"vm-paused": 3, "vm-rebooted": 2, "vm-clock-step": 2, "vm-route-change": 2}


def kind_of_lag(
    lag_ms: float, ts: float, outage: Outage, *, copy_before: bool, settings: DetectorSettings = DEFAULTS
) -> LagKind:
    """The kind of a clock lag of ``lag_ms`` (negative) seen at ``ts`` given the pings' gaps since the offsets'
    reference; ``copy_before``: a memory copy (the VM's mean RTT raised) was going on as the stop began."""
    lag_s, longest = -lag_ms / 1000.0, outage.longest_s
    # An NTP offset is known to within half its delay, and the guest's clock drifts a little between answers.
    beyond = lag_s > outage.allowed_s(ts) + settings.clock_step_margin_ms / 1000.0
    if longest >= settings.reboot_min_s and (beyond or lag_s < longest / 2):
        return "vm-rebooted"  # the clock did not stand still for the outage: it was set afresh
    if beyond:
        return "vm-clock-step"
    # The lag is how long the clock stood still: a stop the pings show (one lost ping spans up to two
    # intervals) that the lag says was short (a fast migration's 0.1 s) is no pause.
    if min(lag_s, outage.shown_s()) >= settings.pause_min_s and not copy_before:
        return "vm-paused"
    return MIGRATION
