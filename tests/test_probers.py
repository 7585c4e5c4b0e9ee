"""The ICMP and NTP probers over real sockets: loopback here; namespace test hosts in test_probe_hosts.py."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Coroutine, Iterator
from typing import Any, TypeVar

import pytest
from icmplib import ICMPv4Socket

from migwatch.probes.icmp import IcmpProber, TimestampedICMPv4Socket
from migwatch.probes.ntp import ClockReading, NtpProber
from migwatch.probes.pending import Pending
from tests.ntp_responder import NtpResponder

T = TypeVar("T")


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coroutine)


@pytest.mark.parametrize("address", ["127.0.0.1", "::1"])
def test_echo_over_loopback_has_a_kernel_timed_rtt_and_the_reply_ttl(address: str) -> None:
    async def probe() -> list:
        prober = IcmpProber()
        try:
            return [await prober.echo(address, 1.0) for _ in range(20)]
        finally:
            prober.close()

    echoes = run(probe())
    rtts = sorted(echo.rtt_ms for echo in echoes if echo.rtt_ms is not None)
    assert len(rtts) == 20
    # Kernel timestamps: loopback round trips of tens of microseconds, not the event loop's milliseconds.
    assert rtts[10] < 0.5
    assert {echo.ttl for echo in echoes} == {64}


def test_thousands_of_addresses_at_once_over_one_socket() -> None:
    addresses = [f"127.1.{i // 250}.{i % 250 + 1}" for i in range(3000)]

    async def probe() -> list:
        prober = IcmpProber()
        try:
            return await asyncio.gather(*(prober.echo(address, 5.0) for address in addresses))
        finally:
            prober.close()

    echoes = run(probe())
    assert sum(echo.rtt_ms is not None for echo in echoes) == len(addresses)
    assert sorted(echo.rtt_ms for echo in echoes)[len(echoes) // 2] < 5.0


@pytest.fixture
def responder() -> Iterator[NtpResponder]:
    server = NtpResponder(offset_ms=-152.3)
    yield server
    server.close()


def _query(port: int, address: str = "127.0.0.1", timeout: float = 1.0) -> ClockReading:
    async def query() -> ClockReading:
        prober = NtpProber(port=port)
        try:
            return await prober.query(address, timeout)
        finally:
            prober.close()

    return run(query())


def test_ntp_offset_sign_and_size(responder: NtpResponder) -> None:
    # As an NTP client does, the answer with the least round trip of a few: a query's offset can be off by up
    # to half its delay (a CI machine once delayed one side of a loopback query by ~9 ms: -147.7 ms).
    readings = [_query(responder.port) for _ in range(3)]
    assert all(r.error is None for r in readings), readings
    reading = min(readings, key=lambda r: r.delay_ms)
    bound = max(1.0, reading.delay_ms / 2)
    assert reading.offset_ms == pytest.approx(-152.3, abs=bound), readings  # the target's clock is behind
    assert 0 <= reading.delay_ms < 50
    assert (reading.stratum, reading.leap, reading.ref_id) == (2, 0, "127.0.0.1")
    assert reading.root_delay_ms == pytest.approx(1.0, abs=0.01)
    responder.offset_ms = 480.0
    assert _query(responder.port).offset_ms == pytest.approx(480.0, abs=1.0)


def test_ntp_failures_are_readings_with_an_error(responder: NtpResponder) -> None:
    responder.leap = 3
    assert _query(responder.port).error == "unsynchronized"
    responder.leap, responder.stratum = 0, 16
    assert _query(responder.port).error == "unsynchronized"
    responder.garbage = True
    assert _query(responder.port).error == "invalid"
    responder.garbage, responder.silent = False, True
    reading = _query(responder.port, timeout=0.3)
    assert (reading.error, reading.offset_ms, reading.delay_ms) == ("timeout", None, None)


def test_our_fast_echo_packets_equal_icmplibs() -> None:
    ours = TimestampedICMPv4Socket.__new__(TimestampedICMPv4Socket)
    theirs = ICMPv4Socket.__new__(ICMPv4Socket)
    rng = random.Random(5)
    for _ in range(5000):
        ident, sequence = rng.randrange(65536), rng.randrange(65536)
        payload = rng.randbytes(rng.randrange(0, 40))
        assert ours._create_packet(ident, sequence, payload) == ICMPv4Socket._create_packet(
            theirs, ident, sequence, payload
        )
    for sock in (ours, theirs):
        sock._sock = None  # never opened: nothing for __del__ to close


def test_a_key_waiting_again_is_not_expired_by_its_earlier_request() -> None:
    outcomes: list[str] = []

    async def scenario() -> None:
        pending: Pending[str, str] = Pending()
        pending.add("server", 0.0, outcomes.append, 0.1, "first expired")
        first = pending.answer("server")
        assert first is not None
        first[1]("first answered")
        pending.add("server", 0.0, outcomes.append, 0.5, "second expired")  # same key, a later query
        await asyncio.sleep(0.3)  # the first request's deadline has passed
        assert "server" in pending
        await asyncio.sleep(0.4)
        pending.close()

    run(scenario())
    assert outcomes == ["first answered", "second expired"]
