"""Drift-free per-target schedules that drive the probers and hand every sample to a sink.

Each target's pings fire at ``anchor + k * ping_interval_s`` (and its NTP queries likewise), never at "last
time + interval", so a late start does not push every later probe back. Anchors are spread over the
interval by a hash of the target id, so ten thousand targets do not fire in the same millisecond. How late
each probe fired is recorded (``lateness``); a probe that could only fire more than one interval late is
skipped and counted rather than fired in a burst.

The sink must not block (the Kafka publisher buffers): probing never waits for the broker.
"""

from __future__ import annotations

import asyncio
import bisect
import functools
import heapq
import itertools
import socket
import time
import zlib
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import msgspec

from migwatch.contract.config import ProbeSettings
from migwatch.contract.records import ClockSample, PingSample, Sample, Target
from migwatch.probes.icmp import Echo, IcmpProber
from migwatch.probes.ntp import ClockReading, NtpProber
from migwatch.probes.own_clock import OwnClock
from migwatch.probes.prober import Prober

Sink = Callable[[Sample], None]
SLACK_S = 0.001  # probes due this soon fire now, together: one wake-up serves many targets
WAKE_S = 0.05  # the longest sleep of the loop
BURST = 500  # probes fired before the loop lets replies in
# Upper bounds (s) of the lateness histogram; the last one catches everything.
LATENESS_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, float("inf"))


class Resolver:
    """Host names to addresses, looked up without blocking the loop and cached for ``every_s``."""

    def __init__(self, every_s: float) -> None:
        self.every_s = every_s
        self._cache: dict[str, tuple[float, str | None]] = {}

    def known(self, address: str) -> tuple[bool, str | None]:
        """(True, IP or None) from the cache while fresh, else (False, None): then ``resolve`` must look."""
        cached = self._cache.get(address)
        if cached is not None and cached[0] > time.monotonic():
            return True, cached[1]
        return False, None

    async def resolve(self, address: str) -> str | None:
        """The IP address for a target's address (itself when it is one); None when the name fails."""
        found, ip = self.known(address)
        if found:
            return ip
        now = time.monotonic()
        try:
            socket.inet_pton(socket.AF_INET6 if ":" in address else socket.AF_INET, address)
            ip: str | None = address
            expires = float("inf")  # an IP address needs no lookup, ever
        except OSError:
            try:
                infos = await asyncio.get_running_loop().getaddrinfo(address, None, type=socket.SOCK_DGRAM)
                ip = str(infos[0][4][0])
            except (OSError, UnicodeError, IndexError):
                ip = None
            expires = now + self.every_s
        self._cache[address] = (expires, ip)
        return ip


@dataclass
class _Job:
    target: Target
    kind: str  # "ping" or "ntp"
    interval: float
    cancelled: bool = False


class Scheduler:
    """Probes a set of targets until stopped; ``set_targets`` changes the set while it runs."""

    def __init__(
        self,
        settings: ProbeSettings,
        sink: Sink,
        icmp: Prober[Echo] | None = None,
        ntp: Prober[ClockReading] | None = None,
    ) -> None:
        self.settings = settings
        self.sink = sink
        self.icmp: Prober[Echo] = icmp or IcmpProber()
        self.ntp: Prober[ClockReading] = ntp or NtpProber(port=settings.ntp_port)
        self.resolver = Resolver(settings.resolve_every_s)
        self.lateness: deque[float] = deque(maxlen=100_000)  # seconds, most recent probes
        self._lateness_counts = [0] * len(LATENESS_BUCKETS)  # per bucket; the histogram sums them up
        self.lateness_sum = 0.0
        self.skipped = 0
        self.fired = 0
        self.unanswered = 0  # pings without a reply
        self.ntp_errors: dict[str, int] = {}  # failed NTP queries by error
        # (due, order, job): tuples compare in C, and `order` breaks ties before the job would be compared.
        self._heap: list[tuple[float, int, _Job]] = []
        self._jobs: dict[tuple[str, str], _Job] = {}
        self._seq: dict[str, int] = {}
        # The probe's own wall clock, looked at before every probe; what it had stepped at each target's last
        # NTP query (see own_clock.py).
        self.own_clock = OwnClock()
        self._clock_marks: dict[str, float] = {}
        self._order = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._in_flight = 0  # probes sent and not yet answered or timed out
        self._stopping = False
        self.alive_at = time.monotonic()  # when the loop last turned (the probe's /healthz)

    # ------------------------------------------------------------------------------------------- targets

    def set_targets(self, targets: Iterable[Target]) -> None:
        """Probe exactly these targets from now on; kept targets keep their schedule and sequence."""
        wanted: dict[tuple[str, str], tuple[Target, float]] = {}
        for target in targets:
            wanted[(target.id, "ping")] = (target, target.ping_interval_s)
            if target.ntp:
                wanted[(target.id, "ntp")] = (target, target.ntp_interval_s)
        for key, job in list(self._jobs.items()):
            if key not in wanted or wanted[key] != (job.target, job.interval):
                job.cancelled = True  # lazily dropped from the heap
                del self._jobs[key]
                if key not in wanted and key[1] == "ntp":
                    self._clock_marks.pop(key[0], None)
        now = time.monotonic()
        for key, (target, interval) in wanted.items():
            if key not in self._jobs:
                # A fixed phase per target and kind spreads the fleet over the interval.
                phase = zlib.crc32(f"{key[0]}/{key[1]}".encode()) / 2**32 * interval
                job = _Job(target, key[1], interval)
                self._jobs[key] = job
                self._push(now + phase, job)

    @property
    def targets(self) -> int:
        return len({target_id for target_id, _ in self._jobs})

    # ----------------------------------------------------------------------------------------------- run

    async def run(self, duration_s: float | None = None) -> None:
        """Fire probes until ``stop()`` (or for ``duration_s``), then wait for the ones in flight."""
        end = None if duration_s is None else time.monotonic() + duration_s
        heap = self._heap
        fired_in_a_row = 0
        while not self._stopping:
            now = self.alive_at = time.monotonic()
            if end is not None and now >= end:
                break
            while heap and heap[0][2].cancelled:
                heapq.heappop(heap)
            if not heap or heap[0][0] > now + SLACK_S:
                # A plain sleep (no task, no event): new targets and stop() are seen within WAKE_S.
                wait = min(heap[0][0] - now, WAKE_S) if heap else WAKE_S
                await asyncio.sleep(wait if end is None else min(wait, end - now))
                fired_in_a_row = 0
                continue
            if fired_in_a_row >= BURST:
                await asyncio.sleep(0)  # let the replies of a long burst in before firing more
                fired_in_a_row = 0
            due, _, job = heapq.heappop(heap)
            late = now - due if now > due else 0.0
            fired_in_a_row += 1
            if late > job.interval:
                # Too late to mean anything at this slot: skip to the next one instead of a burst.
                missed = int(late // job.interval)
                self.skipped += missed
                self._push(due + missed * job.interval, job)
            else:
                self._late(late)
                self._fire(job)
                self._push(due + job.interval, job)
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        while self._in_flight:  # probes waiting for their answer or timeout
            await asyncio.sleep(0.02)

    def _push(self, due: float, job: _Job) -> None:
        self._order += 1
        heapq.heappush(self._heap, (due, self._order, job))

    def _late(self, late: float) -> None:
        self.lateness.append(late)
        self.lateness_sum += late
        self._lateness_counts[bisect.bisect_left(LATENESS_BUCKETS, late)] += 1

    @property
    def lateness_buckets(self) -> dict[float, int]:
        """Upper bound -> probes at most that late (cumulative, as Prometheus histograms count)."""
        return dict(zip(LATENESS_BUCKETS, itertools.accumulate(self._lateness_counts), strict=True))

    def stop(self) -> None:
        self._stopping = True

    def close(self) -> None:
        self.icmp.close()
        self.ntp.close()

    def _fire(self, job: _Job) -> None:
        self.fired += 1
        self.own_clock.look()
        found, ip = self.resolver.known(job.target.address)
        if found:
            # The common case costs no task: the prober calls back with the answer or the timeout.
            self._probe(job, ip)
        else:
            task = asyncio.create_task(self._resolve_and_probe(job))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _resolve_and_probe(self, job: _Job) -> None:
        self._probe(job, await self.resolver.resolve(job.target.address))

    def _probe(self, job: _Job, ip: str | None) -> None:
        """Hand one probe to its prober; both probers answer through the same ``send(ip, timeout, done)``."""
        target = job.target
        self._in_flight += 1
        if job.kind == "ping":
            seq = self._seq.get(target.id, 0)
            self._seq[target.id] = seq + 1
            done = functools.partial(self._pinged, target, seq)
            if ip is None:  # a name that does not resolve: an unanswered ping
                done(Echo(time.time(), None, None))
                return
            timeout = self.settings.ping_timeout_s if target.ping_timeout_s is msgspec.UNSET else target.ping_timeout_s
            self.icmp.send(ip, timeout, done)
        else:
            steps = self.own_clock.look()
            before = self._clock_marks.get(target.id)
            self._clock_marks[target.id] = steps
            answered = functools.partial(self._queried, target, None if before is None else steps - before)
            if ip is None:  # no address, no answer to be had
                answered(ClockReading(time.time(), error="timeout"))
                return
            self.ntp.send(ip, self.settings.ntp_timeout_s, answered)

    def _pinged(self, target: Target, seq: int, echo: Echo) -> None:
        self._in_flight -= 1
        sent, rtt, ttl = echo.sent, echo.rtt_ms, echo.ttl
        self.unanswered += rtt is None
        self.sink(
            PingSample(
                target=target.id,
                address=target.address,
                kind=target.kind,
                probe=self.settings.name,
                seq=seq,
                ts=sent,
                rtt_ms=rtt,
                ttl=ttl,
            )
        )

    def _queried(self, target: Target, probe_step_ms: float | None, reading: ClockReading) -> None:
        self._in_flight -= 1
        if reading.error is not None:
            self.ntp_errors[reading.error] = self.ntp_errors.get(reading.error, 0) + 1
        self.sink(
            ClockSample(
                probe_step_ms=msgspec.UNSET if probe_step_ms is None else round(probe_step_ms, 3),
                target=target.id,
                address=target.address,
                probe=self.settings.name,
                ts=reading.sent,
                offset_ms=reading.offset_ms,
                delay_ms=reading.delay_ms,
                stratum=reading.stratum,
                ref_id=reading.ref_id,
                leap=reading.leap,
                root_delay_ms=reading.root_delay_ms,
                root_dispersion_ms=reading.root_dispersion_ms,
                error=reading.error,  # type: ignore[arg-type]
            )
        )

    def lateness_quantiles(self) -> dict[str, float]:
        """p50, p99 and max of how late the recent probes fired, in milliseconds."""
        ordered = sorted(self.lateness)
        if not ordered:
            return {"p50": 0.0, "p99": 0.0, "max": 0.0}

        def at(quantile: float) -> float:
            return 1000 * ordered[min(len(ordered) - 1, int(quantile * len(ordered)))]

        return {"p50": at(0.5), "p99": at(0.99), "max": 1000 * ordered[-1]}
