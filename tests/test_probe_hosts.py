"""The probers against test hosts in network namespaces: loss and TTL changes made with iptables, and
unprivileged ICMP sockets where ping_group_range allows them."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from migwatch_dev.lab.chrony import chrony_server
from migwatch_dev.lab.link_emulator import emulated_link
from tests.netns import Link, link

ECHO = """
import asyncio, json
from migwatch.probes.icmp import IcmpProber
async def main():
    prober = IcmpProber(privileged={privileged})
    try:
        echoes = [await prober.echo({address!r}, {timeout}) for _ in range({count})]
    finally:
        prober.close()
    print(json.dumps([[e.rtt_ms, e.ttl] for e in echoes]))
asyncio.run(main())
"""


@pytest.fixture
def hosts() -> Iterator[Link]:
    with link() as made:
        yield made


def _echo(hosts: Link, address: str, count: int = 5, timeout: float = 1.0, privileged: bool | None = None) -> list:
    code = ECHO.format(privileged=privileged, address=address, timeout=timeout, count=count)
    return hosts.python_in_monitor(code)  # type: ignore[return-value]


@pytest.mark.parametrize("family", [4, 6])
def test_a_namespace_host_answers_with_its_ttl(hosts: Link, family: int) -> None:
    # The first request may wait for neighbour discovery on the fresh link: judge the ones after it.
    echoes = _echo(hosts, hosts.host_ip if family == 4 else hosts.host_ip6, count=6)[1:]
    assert all(rtt is not None and rtt < 50 for rtt, _ in echoes)
    assert {ttl for _, ttl in echoes} == {64}


def test_dropped_replies_are_unanswered_samples_not_missing_ones(hosts: Link) -> None:
    hosts.in_host("iptables", "-A", "OUTPUT", "-p", "icmp", "--icmp-type", "echo-reply", "-j", "DROP")
    echoes = _echo(hosts, hosts.host_ip, count=3, timeout=0.3)
    assert echoes == [[None, None]] * 3


def test_a_ttl_change_is_read_from_the_reply(hosts: Link) -> None:
    hosts.in_host("iptables", "-t", "mangle", "-A", "OUTPUT", "-p", "icmp", "-j", "TTL", "--ttl-set", "50")
    assert {ttl for _, ttl in _echo(hosts, hosts.host_ip)} == {50}


def test_unprivileged_sockets_where_ping_group_range_allows_them(hosts: Link) -> None:
    refused = hosts.python_in_monitor(
        "import json\nfrom migwatch.probes.icmp import open_socket, IcmpUnavailableError\n"
        "try:\n    open_socket(4, privileged=False)\n    print(json.dumps('opened'))\n"
        "except IcmpUnavailableError as error:\n    print(json.dumps(str(error)))\n"
    )
    assert "net.ipv4.ping_group_range" in str(refused) and "sysctl -w" in str(refused)
    hosts.in_monitor("sysctl", "-qw", "net.ipv4.ping_group_range=0 2147483647")
    echoes = _echo(hosts, hosts.host_ip, privileged=False)
    assert all(rtt is not None for rtt, _ in echoes)
    assert {ttl for _, ttl in echoes} == {64}  # from IP_RECVTTL: no IP header on these sockets


def test_rtt_follows_the_emulated_delay_as_it_changes() -> None:
    with emulated_link(delay_ms=5.0) as emulated:
        hosts = Link(emulated.monitor, emulated.host, emulated.monitor_ip, emulated.host_ip, "", "")
        five = sorted(rtt for rtt, _ in _echo(hosts, emulated.host_ip, count=10, timeout=2.0))
        emulated.emulator.delay_ms = 20.0  # live, as the lab's profiles change a link
        twenty = sorted(rtt for rtt, _ in _echo(hosts, emulated.host_ip, count=10, timeout=2.0))
    # 5 ms each way is a 10 ms round trip; the emulator's own scheduling adds a little.
    assert 9.5 <= five[5] <= 12.0, five
    assert 39.5 <= twenty[5] <= 43.0, twenty


NTP_QUERY = """
import asyncio, json
from migwatch.probes.ntp import NtpProber
async def main():
    prober = NtpProber()
    try:
        reading = await prober.query({address!r}, 1.0)
    finally:
        prober.close()
    print(json.dumps([reading.offset_ms, reading.delay_ms, reading.stratum, reading.error]))
asyncio.run(main())
"""


def _offset_settles(hosts: Link, want_ms: float, timeout_s: float = 40.0) -> list:
    deadline = time.monotonic() + timeout_s
    reading: list = []
    while time.monotonic() < deadline:
        reading = hosts.python_in_monitor(NTP_QUERY.format(address=hosts.host_ip))  # type: ignore[assignment]
        if reading[3] is None and abs(reading[0] - want_ms) < 1.0:
            return reading
        time.sleep(1.0)
    raise AssertionError(f"offset did not settle at {want_ms} ms; last reading {reading}")


def test_ntp_offset_follows_a_real_chrony_server(hosts: Link, tmp_path: Path) -> None:
    with chrony_server(hosts.host, hosts.host_ip, tmp_path / "chrony", offset_ms=40.0) as clock:
        _, delay, stratum, _ = _offset_settles(hosts, 40.0)
        assert 0 <= delay < 5 and stratum == 1
        clock.offset_ms = -150.0  # the VM's clock falls behind, as after a pause
        assert _offset_settles(hosts, -150.0)[0] < 0


TIMEOUTS = """
import asyncio, json, time
from migwatch.contract.config import ProbeSettings
from migwatch.probes.scheduler import Scheduler
from migwatch.contract.records import Target
waited = {{}}
def sink(sample):
    waited.setdefault(sample.target, []).append(time.time() - sample.ts)
async def main():
    scheduler = Scheduler(ProbeSettings(ping_timeout_s=1.0), sink)
    scheduler.set_targets([
        Target(id="own", address={address!r}, ping_interval_s=0.5, ping_timeout_s=0.2, ntp=False),
        Target(id="default", address={address!r}, ping_interval_s=0.5, ntp=False),
    ])
    await scheduler.run(2.0)
    scheduler.close()
    print(json.dumps({{target: sorted(times)[len(times) // 2] for target, times in waited.items()}}))
asyncio.run(main())
"""


def test_a_targets_own_ping_timeout(hosts: Link) -> None:
    hosts.in_host("iptables", "-A", "OUTPUT", "-p", "icmp", "--icmp-type", "echo-reply", "-j", "DROP")
    waited = hosts.python_in_monitor(TIMEOUTS.format(address=hosts.host_ip))
    assert 0.2 <= waited["own"] < 0.5  # type: ignore[index]
    assert 1.0 <= waited["default"] < 1.3  # type: ignore[index]
