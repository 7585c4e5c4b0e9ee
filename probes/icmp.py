"""ICMP echo prober: icmplib's packets and sockets, with kernel receive timestamps and the reply's TTL.

icmplib stamps a reply when its own loop gets to it, which under load adds milliseconds to sub-millisecond
data-center RTTs. Here the kernel stamps each reply as it arrives (``SO_TIMESTAMPNS``) and the send time is
taken right before ``sendto``; the reply's TTL (hop limit) comes as ancillary data (``IP_RECVTTL``,
``IPV6_RECVHOPLIMIT``). icmplib still builds and parses the packets (its socket classes are extended, not
rewritten), and one socket per address family serves every target: requests are told apart by address and
sequence number.

Root gets raw sockets; anyone else gets Linux's unprivileged ICMP sockets where
``net.ipv4.ping_group_range`` includes their group, and a clear error saying how to allow it otherwise.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import socket
import struct
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

from icmplib import ICMPv4Socket, ICMPv6Socket
from icmplib.exceptions import SocketPermissionError

from migwatch.probes import timestamps
from migwatch.probes.pending import Pending

# Linux values the socket module does not export.
IP_RECVTTL = 12
SOL_RAW = 255
ICMP_FILTER = 1
ICMP6_FILTER = 1
_TTL_MESSAGES = ((socket.IPPROTO_IP, socket.IP_TTL), (socket.IPPROTO_IPV6, socket.IPV6_HOPLIMIT))
_ECHO_REPLY = {4: 0, 6: 129}
_ID_SEQUENCE = struct.Struct("!HH")
PAYLOAD = b"migwatch"


log = logging.getLogger(__name__)


class IcmpUnavailableError(RuntimeError):
    """Neither raw nor unprivileged ICMP sockets can be opened; the message says how to allow them."""


@dataclass(frozen=True)
class Echo:
    """One echo request's outcome: send time (wall clock, s), RTT in ms or None, reply TTL or None."""

    sent: float
    rtt_ms: float | None
    ttl: int | None


@functools.cache
def _payload_sum(payload: bytes) -> int:
    """The payload's share of the Internet checksum: the sum of its 16-bit big-endian words."""
    padded = payload + b"\x00" * (len(payload) % 2)
    return sum(struct.unpack(f"!{len(padded) // 2}H", padded))


class _Timestamped:
    """Mixin for icmplib's socket classes: kernel timestamps and TTLs on receive."""

    _sock: socket.socket
    _privileged: bool
    _IP_VERSION: int

    def enable_ancillary(self) -> None:
        timestamps.enable(self._sock)
        if self._IP_VERSION == 4:
            self._sock.setsockopt(socket.IPPROTO_IP, IP_RECVTTL, 1)
        else:
            self._sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVHOPLIMIT, 1)
        if self._privileged:
            # A raw socket gets every ICMP message of the host (on loopback our own requests too): let the
            # kernel pass echo replies only, instead of parsing and dropping the rest here.
            if self._IP_VERSION == 4:
                self._sock.setsockopt(SOL_RAW, ICMP_FILTER, struct.pack("I", ~(1 << 0) & 0xFFFFFFFF))
            else:
                blocked = bytearray(b"\xff" * 32)  # ICMP6_FILTER: a set bit blocks that type (little-endian words)
                blocked[_ECHO_REPLY[6] >> 3] &= ~(1 << (_ECHO_REPLY[6] & 7)) & 0xFF
                self._sock.setsockopt(socket.IPPROTO_ICMPV6, ICMP6_FILTER, bytes(blocked))

    def _create_packet(self, id: int, sequence: int, payload: bytes) -> bytes:
        """icmplib's packet, with the checksum summed in C-speed steps: it is built ten thousand times a second."""
        kind = self._ICMP_ECHO_REQUEST  # type: ignore[attr-defined]
        total = (kind << 8) + id + sequence + _payload_sum(payload)
        while total >> 16:
            total = (total & 0xFFFF) + (total >> 16)
        return struct.pack("!2B3H", kind, 0, ~total & 0xFFFF, id, sequence) + payload

    def send_echo(self, address: str, ident: int, sequence: int) -> float:
        """Send one echo request; returns the wall-clock time taken right before ``sendto``."""
        packet = self._create_packet(ident, sequence, PAYLOAD)  # type: ignore[attr-defined]
        destination = (address, 0) if self._IP_VERSION == 4 else (address, 0, 0, 0)
        sent = time.time()
        self._sock.sendto(packet, destination)
        return sent

    def receive_echo(self) -> tuple[str, int, int, float, int | None] | None:
        """One waiting echo reply as (source, id, sequence, kernel time, TTL), None for other packets.

        Raises BlockingIOError when nothing is waiting.
        """
        packet, ancillary, _flags, source = self._sock.recvmsg(2048, 512)
        stamp = timestamps.received_at(ancillary)
        ttl = None
        for level, kind, data in ancillary:
            if (level, kind) in _TTL_MESSAGES:
                ttl = int.from_bytes(data[:4], sys.byteorder)
        # Only a raw IPv4 socket hands over the IP header (its length in the low nibble of byte 0).
        start = (packet[0] & 0x0F) * 4 if self._privileged and self._IP_VERSION == 4 and packet else 0
        if ttl is None and start:
            ttl = packet[8]
        # icmplib's _parse_reply builds an object per packet; the three fields needed are read directly.
        if len(packet) < start + 8 or packet[start] != _ECHO_REPLY[self._IP_VERSION]:
            return None
        ident, sequence = _ID_SEQUENCE.unpack_from(packet, start + 4)
        return source[0], ident, sequence, stamp, ttl


class TimestampedICMPv4Socket(_Timestamped, ICMPv4Socket):
    """icmplib's ICMPv4 socket with kernel receive timestamps and reply TTLs."""


class TimestampedICMPv6Socket(_Timestamped, ICMPv6Socket):
    """icmplib's ICMPv6 socket with kernel receive timestamps and reply hop limits."""


def open_socket(version: int, privileged: bool | None = None) -> TimestampedICMPv4Socket | TimestampedICMPv6Socket:
    """A raw socket for root, else an unprivileged one (``privileged`` forces one kind); IcmpUnavailableError
    when none may be opened."""
    kind = TimestampedICMPv4Socket if version == 4 else TimestampedICMPv6Socket
    for raw in (True, False) if privileged is None else (privileged,):
        try:
            sock = kind(privileged=raw)
        except (SocketPermissionError, PermissionError, OSError):
            continue
        sock.enable_ancillary()
        # Which kind the probe got is the first question when ICMP misbehaves in a container: say it once.
        log.info("ICMPv%d: %s", version, "raw sockets" if raw else "unprivileged sockets (net.ipv4.ping_group_range)")
        return sock
    low, high = _ping_group_range()
    raw = "raw sockets were not asked for" if privileged is False else "raw sockets need root or CAP_NET_RAW"
    raise IcmpUnavailableError(
        f"cannot open an ICMPv{version} socket: {raw}, and group {os.getgid()} is outside "
        f"net.ipv4.ping_group_range ({low} {high}); allow unprivileged ICMP with "
        f"'sysctl -w net.ipv4.ping_group_range=\"0 2147483647\"' (per network namespace; in Kubernetes a "
        f"safe pod sysctl), or grant CAP_NET_RAW"
    )


def _ping_group_range() -> tuple[int, int]:
    try:
        low, high = open("/proc/sys/net/ipv4/ping_group_range").read().split()  # noqa: SIM115
        return int(low), int(high)
    except (OSError, ValueError):
        return 1, 0


class IcmpProber:
    """Sends echo requests to any number of addresses over one socket per family and matches the replies.

    ``send(address, timeout, done)`` calls ``done(echo)`` exactly once: with the reply, or after ``timeout``
    with an unanswered Echo (``rtt_ms=None``), never an exception. ``await prober.echo(address, timeout)`` is
    the same for a single request.
    """

    name = "icmp"

    def __init__(self, privileged: bool | None = None) -> None:
        self._privileged = privileged  # None: raw sockets when allowed, else unprivileged ones
        self._sockets: dict[int, TimestampedICMPv4Socket | TimestampedICMPv6Socket] = {}
        self._pending: Pending[tuple[str, int], Echo] = Pending()
        self._sequence: dict[str, int] = {}
        self._versions: dict[str, tuple[str, int]] = {}  # address as given -> (as the kernel writes it, version)
        self._ident = os.getpid() & 0xFFFF

    def _socket(self, version: int) -> TimestampedICMPv4Socket | TimestampedICMPv6Socket:
        sock = self._sockets.get(version)
        if sock is None:
            sock = self._sockets[version] = open_socket(version, self._privileged)
            asyncio.get_running_loop().add_reader(sock.sock.fileno(), self._on_readable, sock)
        return sock

    def send(self, address: str, timeout: float, done: Callable[[Echo], None]) -> None:
        """Ping one IP address (not a name: resolving is the caller's); ``done`` gets the outcome."""
        known = self._versions.get(address)
        if known is None:
            family, version = (socket.AF_INET6, 6) if ":" in address else (socket.AF_INET, 4)
            # The form the kernel reports replies from; inet_pton also rejects what is no IP address.
            known = self._versions[address] = (socket.inet_ntop(family, socket.inet_pton(family, address)), version)
        address, version = known
        sock = self._socket(version)
        sequence = self._sequence.get(address, 0)
        self._sequence[address] = (sequence + 1) & 0xFFFF
        try:
            sent = sock.send_echo(address, self._ident, sequence)
        except OSError:
            done(Echo(time.time(), None, None))  # no route, say: an unanswered ping
            return
        self._pending.add((address, sequence), sent, done, timeout, Echo(sent, None, None))

    async def echo(self, address: str, timeout: float) -> Echo:
        future: asyncio.Future[Echo] = asyncio.get_running_loop().create_future()
        self.send(address, timeout, future.set_result)
        return await future

    def _on_readable(self, sock: TimestampedICMPv4Socket | TimestampedICMPv6Socket) -> None:
        while True:
            try:
                reply = sock.receive_echo()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return  # an ICMP error queued on the socket: the request will time out
            if reply is None:
                continue
            source, ident, sequence, stamp, ttl = reply
            # Raw sockets see every echo reply on the host: only ours count. Unprivileged sockets get only
            # their own, under an id the kernel chose.
            if sock.is_privileged and ident != self._ident:
                continue
            waiting = self._pending.answer((source, sequence))
            if waiting is not None:
                sent, done = waiting
                done(Echo(sent, max(0.0, (stamp - sent) * 1000.0), ttl))

    def close(self) -> None:
        self._pending.close()
        for sock in self._sockets.values():
            with contextlib.suppress(RuntimeError):  # no loop running any more: nothing to remove
                asyncio.get_running_loop().remove_reader(sock.sock.fileno())
            sock.close()
        self._sockets.clear()
