"""NTP prober: the target's clock offset against ours, from one client query (ntplib's packet format).

One UDP socket per address family serves every target: a query is a datagram, its answer is matched by
the server's address and the originate timestamp it echoes, so thousands of targets need no thread each.
The send time is taken right before ``sendto`` and the receive time is the kernel's (``SO_TIMESTAMPNS``).

offset = ((t2 - t1) + (t3 - t4)) / 2 is negative when the target's clock is behind ours; delay =
(t4 - t1) - (t3 - t2). A failed query is a ClockSample with ``error`` set: ``timeout``, ``unsynchronized``
(the server says it has no time: leap 3, stratum 0 or 16+), ``invalid`` (not an NTP server answer).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass

import ntplib

from migwatch.probes import timestamps
from migwatch.probes.pending import Pending

NTP_PORT = 123
_ORIGIN_TOLERANCE_S = 1e-5  # NTP's 32-bit fraction round-trips our send time to within a microsecond


@dataclass(frozen=True)
class ClockReading:
    """One query's outcome; ``error`` is None for an answer."""

    sent: float
    offset_ms: float | None = None
    delay_ms: float | None = None
    stratum: int | None = None
    ref_id: str | None = None
    leap: int | None = None
    root_delay_ms: float | None = None
    root_dispersion_ms: float | None = None
    error: str | None = None


def _ref_id(packet: ntplib.NTPPacket) -> str | None:
    try:
        return str(ntplib.ref_id_to_text(packet.ref_id, packet.stratum))[:64]
    except ntplib.NTPException:
        return None


def reading(packet: ntplib.NTPPacket, sent: float, received: float) -> ClockReading:
    """Turn a server's answer into a reading (or an error reading)."""
    if packet.mode != 4:
        return ClockReading(sent, error="invalid")
    common = {
        "stratum": packet.stratum, "ref_id": _ref_id(packet), "leap": packet.leap,
        "root_delay_ms": packet.root_delay * 1000, "root_dispersion_ms": packet.root_dispersion * 1000,
    }  # fmt: skip
    if packet.leap == 3 or not 1 <= packet.stratum <= 15:
        return ClockReading(sent, error="unsynchronized", **common)
    t2, t3 = ntplib.ntp_to_system_time(packet.recv_timestamp), ntplib.ntp_to_system_time(packet.tx_timestamp)
    t1, t4 = sent, received
    offset = ((t2 - t1) + (t3 - t4)) / 2
    delay = (t4 - t1) - (t3 - t2)
    return ClockReading(sent, offset_ms=offset * 1000, delay_ms=delay * 1000, **common)


class NtpProber:
    """``send(address, timeout, done)`` calls ``done(reading)`` exactly once, for any number of addresses at
    once (one query per address at a time); ``await prober.query(address, timeout)`` for a single one."""

    name = "ntp"

    def __init__(self, port: int = NTP_PORT) -> None:
        self.port = port
        self._sockets: dict[int, socket.socket] = {}
        self._pending: Pending[str, ClockReading] = Pending()

    def _socket(self, version: int) -> socket.socket:
        sock = self._sockets.get(version)
        if sock is None:
            sock = socket.socket(socket.AF_INET if version == 4 else socket.AF_INET6, socket.SOCK_DGRAM)
            timestamps.enable(sock)
            self._sockets[version] = sock
            asyncio.get_running_loop().add_reader(sock.fileno(), self._on_readable, sock)
        return sock

    def send(self, address: str, timeout: float, done: Callable[[ClockReading], None]) -> None:
        """Query the NTP server at one IP address (not a name: resolving is the caller's)."""
        ip = ipaddress.ip_address(address)
        address = str(ip)
        sock = self._socket(ip.version)
        if address in self._pending:
            # One query per server at a time: a second would only confuse the matching.
            done(ClockReading(time.time(), error="timeout"))
            return
        sent = time.time()
        packet = ntplib.NTPPacket(version=4, mode=3, tx_timestamp=ntplib.system_to_ntp_time(sent)).to_data()
        try:
            sock.sendto(packet, (address, self.port) if ip.version == 4 else (address, self.port, 0, 0))
        except OSError:
            done(ClockReading(sent, error="refused"))
            return
        self._pending.add(address, sent, done, timeout, ClockReading(sent, error="timeout"))

    async def query(self, address: str, timeout: float) -> ClockReading:
        future: asyncio.Future[ClockReading] = asyncio.get_running_loop().create_future()
        self.send(address, timeout, future.set_result)
        return await future

    def _on_readable(self, sock: socket.socket) -> None:
        while True:
            try:
                data, ancillary, _flags, source = sock.recvmsg(512, 256)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                continue  # an ICMP error for an earlier datagram: that query times out
            received = timestamps.received_at(ancillary)
            sent = self._pending.sent_at(source[0])
            if sent is None or source[1] != self.port:
                continue
            packet = ntplib.NTPPacket()
            try:
                packet.from_data(data)
            except ntplib.NTPException:
                result = ClockReading(sent, error="invalid")
            else:
                if abs(packet.orig_timestamp - ntplib.system_to_ntp_time(sent)) > _ORIGIN_TOLERANCE_S:
                    continue  # the answer to an earlier query that timed out: keep waiting for this one's
                result = reading(packet, sent, received)
            waiting = self._pending.answer(source[0])
            if waiting is not None:
                waiting[1](result)

    def close(self) -> None:
        self._pending.close()
        for sock in self._sockets.values():
            with contextlib.suppress(RuntimeError):
                asyncio.get_running_loop().remove_reader(sock.fileno())
            sock.close()
        self._sockets.clear()
