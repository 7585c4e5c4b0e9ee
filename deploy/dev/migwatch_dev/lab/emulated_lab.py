"""Emulated migrations without QEMU: a test host behind the user-space link emulator, with chronyd.

Each episode plays the pattern the paper (and the QEMU lab) shows on the wire: a migration raises the
delay with outliers while memory is copied (``start_copy``), then loses the replies of the stop-and-copy
and comes back with the VM's clock behind (``switch``); a bulk copy is ``start_copy`` and ``end_copy``
alone. A migration with ``relocate_ms`` moves the VM to a hypervisor that much round trip farther away
(or, negative, nearer): the link keeps the longer delay from the switch on. ``path-change`` lengthens the
path for a while without a move (a reroute). The host's NTP server is chronyd fed by a ``refclock SOCK``
the lab sets, so clock steps are real NTP answers. The monitor end is this process's namespace (a probe
can reach Kafka on loopback too).
"""

from __future__ import annotations

import contextlib
import sys
import time
import typing
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from migwatch_dev.lab.chrony import RefclockFeeder, chrony_server
from migwatch_dev.lab.errors import LabError
from migwatch_dev.lab.link_emulator import EmulatedLink, emulated_link
from migwatch_dev.lab.netns import in_ns
from migwatch_dev.lab.qemu_lab import Migration
from migwatch_dev.lab.targets import VM_ID

BASE_DELAY_MS = 1.0  # each way
_DROP_REPLIES = ("OUTPUT", "-p", "icmp", "--icmp-type", "echo-reply", "-j", "DROP")
# The host's NTP answers to the monitor; the lab's own queries over loopback still pass.
_DROP_NTP = ("OUTPUT", "!", "-o", "lo", "-p", "udp", "--sport", "123", "-j", "DROP")
CLOCK_SETTLE_S = 20.0  # the longest the lab waits for chronyd to serve a new offset (about 3 s when idle)
_SERVED_OFFSET = "import ntplib, sys; print(ntplib.NTPClient().request(sys.argv[1], version=4, timeout=1).offset)"


def start_copy(host: EmulatedLink, delay_ms: float = 6.0, jitter_ms: float = 5.0) -> None:
    """The memory copy shares the VM's path: 6 +- 5 ms each way, against a 2 ms round trip."""
    host.emulator.delay_ms, host.emulator.jitter_ms = delay_ms, jitter_ms


def end_copy(host: EmulatedLink, delay_ms: float = BASE_DELAY_MS) -> None:
    host.emulator.delay_ms, host.emulator.jitter_ms = delay_ms, 0.0


def switch(
    host: EmulatedLink, clock: RefclockFeeder, outage_s: float = 1.2, lag_ms: float = -150.0,
    delay_ms: float = BASE_DELAY_MS,
) -> float:  # fmt: skip
    """The stop-and-copy and the switch to a host ``delay_ms`` away each way; when the VM runs again."""
    with _clock_stands_still(host, clock, lag_ms):
        in_ns(host.host, "iptables", "-A", *_DROP_REPLIES)
        try:
            time.sleep(outage_s)
        finally:
            end_copy(host, delay_ms)
            in_ns(host.host, "iptables", "-D", *_DROP_REPLIES)
        return time.time()


@contextlib.contextmanager
def _clock_stands_still(host: EmulatedLink, clock: RefclockFeeder, lag_ms: float) -> Iterator[None]:
    """A stopped VM's clock stands still: it answers NTP behind by the stop from its first answer after it. The
    lab's chronyd takes a new offset from its refclock some seconds later (about 3 s on an idle machine, more
    under load), so the lag is set as the stop begins and the host's NTP answers are dropped until chronyd
    serves it (timeouts, never an answer without the lag after the stop: the detectors judge a lag by the
    pings between the answers around it)."""
    clock.offset_ms += lag_ms
    in_ns(host.host, "iptables", "-A", *_DROP_NTP)
    try:
        yield
        _wait_until_served(host, clock.offset_ms)
    finally:
        in_ns(host.host, "iptables", "-D", *_DROP_NTP)


def _wait_until_served(host: EmulatedLink, offset_ms: float) -> None:
    """Until the host's chronyd answers with ``offset_ms`` (asked from beside it, over loopback), at most
    ``CLOCK_SETTLE_S``."""
    deadline = time.monotonic() + CLOCK_SETTLE_S
    while time.monotonic() < deadline:
        answer = in_ns(host.host, sys.executable, "-c", _SERVED_OFFSET, host.host_ip, check=False).stdout.strip()
        with contextlib.suppress(ValueError):
            if abs(float(answer) * 1000 - offset_ms) <= 2.0:
                return
        time.sleep(0.2)


@dataclass
class EmulatedLab:
    """One emulated VM (``vm_ip``); the same episode methods as the QEMU lab, with emulation settings."""

    EPISODES: typing.ClassVar = ("migrate", "pause", "bulk_transfer", "cpu_load", "clock_step", "loss_burst",
                                 "ttl_change", "path_change")  # fmt: skip

    link: EmulatedLink
    clock: RefclockFeeder
    hosts: typing.ClassVar = ("hv-1", "hv-2")
    _on: int = 0  # which of ``hosts`` the VM is on
    _delay_ms: float = BASE_DELAY_MS  # each way, to the host the VM is on

    @property
    def vm_ip(self) -> str:
        return self.link.host_ip

    @property
    def addresses(self) -> dict[str, str]:
        """What the probes watch: the VM alone (its hypervisors are not emulated)."""
        return {VM_ID: self.vm_ip}

    def migrate(
        self, *, copy_s: float = 10.0, outage_s: float = 1.2, lag_ms: float = -150.0,
        delay_ms: float = 6.0, jitter_ms: float = 5.0, relocate_ms: float = 0.0,
    ) -> Migration:  # fmt: skip
        start = time.time()
        start_copy(self.link, self._delay_ms + delay_ms, jitter_ms)
        time.sleep(copy_s)
        if self._delay_ms + relocate_ms / 2 < BASE_DELAY_MS:
            raise LabError(f"relocate_ms: the VM is only {2 * (self._delay_ms - BASE_DELAY_MS):g} ms of round trip "
                           f"farther than the nearest host, got {relocate_ms!r}")  # fmt: skip
        self._delay_ms += relocate_ms / 2
        end = switch(self.link, self.clock, outage_s, lag_ms, self._delay_ms)
        source, self._on = self.hosts[self._on], 1 - self._on
        return Migration(start=start, end=end, downtime_ms=outage_s * 1000, total_ms=(end - start) * 1000,
                         source=source, destination=self.hosts[self._on])  # fmt: skip

    def pause(self, seconds: float) -> tuple[float, float]:
        """Replies queue for the pause and then all come (none lost); the clock falls behind by the pause."""
        start = time.time()
        with _clock_stands_still(self.link, self.clock, -seconds * 1000):
            self.link.emulator.held_until = time.monotonic() + seconds
            time.sleep(seconds)
            end = time.time()
        return start, end

    def bulk_transfer(self, seconds: float, delay_ms: float = 6.0, jitter_ms: float = 5.0) -> tuple[float, float]:
        start = time.time()
        start_copy(self.link, self._delay_ms + delay_ms, jitter_ms)
        time.sleep(seconds)
        end_copy(self.link, self._delay_ms)
        return start, time.time()

    def path_change(self, seconds: float, rtt_ms: float = 15.0) -> tuple[float, float]:
        """The route to the VM grows ``rtt_ms`` of round trip longer for a while; the VM does not move."""
        start = time.time()
        end_copy(self.link, self._delay_ms + rtt_ms / 2)
        time.sleep(seconds)
        end_copy(self.link, self._delay_ms)
        return start, time.time()

    def cpu_load(self, seconds: float) -> tuple[float, float]:
        """A busy guest answers a little later and less evenly: 1.5 +- 1 ms each way."""
        return self.bulk_transfer(seconds, delay_ms=1.5, jitter_ms=1.0)

    def clock_step(self, step_s: float) -> tuple[float, float]:
        start = time.time()
        self.clock.offset_ms += step_s * 1000
        return start, time.time()

    def _host_rule(self, table: str, rule: tuple[str, ...], seconds: float) -> tuple[float, float]:
        in_ns(self.link.host, "iptables", "-t", table, "-I", *rule)
        start = time.time()
        try:
            time.sleep(seconds)
        finally:
            in_ns(self.link.host, "iptables", "-t", table, "-D", *rule)
        return start, time.time()

    def loss_burst(self, seconds: float, probability: float) -> tuple[float, float]:
        rule = ("OUTPUT", "-p", "icmp", "--icmp-type", "echo-reply",
                "-m", "statistic", "--mode", "random", "--probability", f"{probability}", "-j", "DROP")  # fmt: skip
        return self._host_rule("filter", rule, seconds)

    def ttl_change(self, seconds: float, hops: int) -> tuple[float, float]:
        return self._host_rule("mangle", ("OUTPUT", "-p", "icmp", "-j", "TTL", "--ttl-dec", str(hops)), seconds)


@contextlib.contextmanager
def emulated_lab(folder: Path) -> Iterator[EmulatedLab]:
    """The emulated host with its chronyd; namespaces, TUN devices and chronyd go on exit."""
    with (
        emulated_link(BASE_DELAY_MS, own_monitor=True) as link,
        chrony_server(link.host, link.host_ip, folder) as clock,
    ):
        yield EmulatedLab(link, clock)
