"""The paper's patterns played on a test host behind the link emulator, with its chronyd's clock.

A live migration: ``start_copy`` (raised delay with outliers: the memory copy shares the VM's path), then
``switch`` (replies lost in the stop-and-copy, the link back to normal, the VM's clock behind). A bulk copy
is ``start_copy`` then ``end_copy`` alone.
"""

from __future__ import annotations

import time

from tests.chrony import RefclockFeeder
from tests.link_emulator import EmulatedLink
from tests.netns import sh

BASE_DELAY_MS = 1.0  # each way
_DROP_REPLIES = ("OUTPUT", "-p", "icmp", "--icmp-type", "echo-reply", "-j", "DROP")


def start_copy(host: EmulatedLink) -> None:
    """6 +- 5 ms each way, against a 2 ms round trip."""
    host.emulator.delay_ms, host.emulator.jitter_ms = 6.0, 5.0


def end_copy(host: EmulatedLink) -> None:
    host.emulator.delay_ms, host.emulator.jitter_ms = BASE_DELAY_MS, 0.0


def switch(host: EmulatedLink, clock: RefclockFeeder, outage_s: float = 1.2, lag_ms: float = -150.0) -> float:
    """The stop-and-copy and the switch; returns the wall-clock time the VM runs again."""
    sh("ip", "netns", "exec", host.host, "iptables", "-A", *_DROP_REPLIES)
    time.sleep(outage_s)
    end_copy(host)
    sh("ip", "netns", "exec", host.host, "iptables", "-D", *_DROP_REPLIES)
    clock.offset_ms = lag_ms
    return time.time()
