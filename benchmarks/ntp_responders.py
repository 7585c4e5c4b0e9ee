"""Many minimal NTP servers on loopback in one process, for benchmarks: one UDP socket per address (each
answer must come from the address that was asked), all served by one selector loop, for a bounded time."""

from __future__ import annotations

import selectors
import socket
import time

import ntplib


def serve(addresses: list[str], port: int, seconds: float) -> None:
    """Answer NTP queries on every address:port until ``seconds`` have passed."""
    selector = selectors.DefaultSelector()
    sockets = []
    for address in addresses:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind((address, port))
        sock.setblocking(False)
        selector.register(sock, selectors.EVENT_READ)
        sockets.append(sock)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for key, _ in selector.select(0.2):
            sock = key.fileobj
            try:
                data, client = sock.recvfrom(512)  # type: ignore[union-attr]
            except BlockingIOError:
                continue
            received = ntplib.system_to_ntp_time(time.time())
            query = ntplib.NTPPacket()
            query.from_data(data)
            answer = ntplib.NTPPacket(version=4, mode=4)
            answer.stratum, answer.ref_id = 2, 0x7F000001
            answer.orig_timestamp, answer.recv_timestamp = query.tx_timestamp, received
            answer.tx_timestamp = ntplib.system_to_ntp_time(time.time())
            sock.sendto(answer.to_data(), client)  # type: ignore[union-attr]
    for sock in sockets:
        sock.close()
