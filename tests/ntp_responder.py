"""A minimal NTP server for tests, on ntplib's packet class: it answers client queries with its clock set
``offset_ms`` away from the host's (the test changes it at run time), or with a chosen fault."""

from __future__ import annotations

import socket
import threading
import time

import ntplib


class NtpResponder:
    """Serves on 127.0.0.1 (or ``host``) at a free UDP port until closed."""

    def __init__(self, host: str = "127.0.0.1", offset_ms: float = 0.0) -> None:
        self.offset_ms = offset_ms
        self.leap = 0
        self.stratum = 2
        self.garbage = False  # answer with bytes that are no NTP packet
        self.silent = False  # do not answer at all
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._sock = socket.socket(family, socket.SOCK_DGRAM)
        self._sock.bind((host, 0))
        self._sock.settimeout(0.2)
        self.port = self._sock.getsockname()[1]
        self._running = True
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while self._running:
            try:
                data, client = self._sock.recvfrom(512)
            except (TimeoutError, OSError):
                continue
            received = time.time() + self.offset_ms / 1000
            if self.silent:
                continue
            if self.garbage:
                self._sock.sendto(b"not ntp", client)
                continue
            query = ntplib.NTPPacket()
            query.from_data(data)
            answer = ntplib.NTPPacket(version=4, mode=4)
            answer.leap, answer.stratum, answer.ref_id = self.leap, self.stratum, 0x7F000001
            answer.root_delay, answer.root_dispersion = 0.001, 0.002
            answer.orig_timestamp = query.tx_timestamp
            answer.recv_timestamp = ntplib.system_to_ntp_time(received)
            answer.tx_timestamp = ntplib.system_to_ntp_time(time.time() + self.offset_ms / 1000)
            self._sock.sendto(answer.to_data(), client)

    def close(self) -> None:
        self._running = False
        self._thread.join()
        self._sock.close()
