"""Trace and label files of CONTRACT section 3.

A trace is JSON Lines, each line a PingSample or ClockSample with ``"type": "ping"`` or ``"type": "ntp"``,
optionally gzip-compressed (``.gz``). :func:`read_trace` streams it in stable ``ts`` order without loading
it whole: a file larger than one chunk is sorted chunk by chunk into temporary files and merged.

    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "t.jsonl.gz"
    >>> ping = PingSample(target="vm-1", address="192.0.2.1", probe="p", seq=0, ts=10.0, rtt_ms=0.4)
    >>> with TraceWriter(path) as trace:
    ...     trace.write(ping)
    >>> [sample.rtt_ms for sample in read_trace(path)]
    [0.4]
"""

from __future__ import annotations

import gzip
import heapq
import math
import os
import tempfile
from collections.abc import Iterable, Iterator
from operator import attrgetter
from pathlib import Path
from typing import IO, Literal

import msgspec

from migwatch.contract.codec import decode, encode
from migwatch.contract.fields import FieldError
from migwatch.contract.records import ClockSample, PingSample, Sample


class PingLine(PingSample, kw_only=True, tag_field="type", tag="ping"):
    """A PingSample as a trace line: the same record, tagged ``"type": "ping"``."""


class ClockLine(ClockSample, kw_only=True, tag_field="type", tag="ntp"):
    """A ClockSample as a trace line: the same record, tagged ``"type": "ntp"``."""


TraceLine = PingLine | ClockLine
_TAGS = {PingSample: b'{"type":"ping",', ClockSample: b'{"type":"ntp",'}
_by_ts = attrgetter("ts")

# Samples held in memory while sorting; about 250 bytes each.
DEFAULT_CHUNK = 250_000


class TraceError(FieldError):
    """A trace or labels file that cannot be read; the message names the file and line."""


def _open(path: Path, mode: Literal["rb", "wb"]) -> IO[bytes]:
    try:
        if path.suffix == ".gz":
            return gzip.open(path, mode)  # type: ignore[return-value]
        return open(path, mode)
    except OSError as error:
        raise TraceError(f"{path}: cannot open: {error.strerror or error}") from None


def encode_line(sample: Sample) -> bytes:
    """One trace line (with its newline): the contract record with the ``type`` tag in front."""
    if isinstance(sample, PingLine | ClockLine):  # read from a trace: msgspec writes the tag itself
        return encode(sample) + b"\n"
    tag = _TAGS[PingSample if isinstance(sample, PingSample) else ClockSample]
    return tag + encode(sample)[1:] + b"\n"


def encode_record(line: TraceLine) -> bytes:
    """A trace line's sample as its topic carries it: the contract record, without the ``type`` tag."""
    encoded = encode(line)  # msgspec writes the tag first
    return b"{" + encoded[len(_TAGS[PingSample if isinstance(line, PingLine) else ClockSample]) :]


class TraceWriter:
    """Writes samples as trace lines, gzip-compressed when the name ends in ``.gz``."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._file = _open(self.path, "wb")
        self.count = 0

    def write(self, sample: Sample) -> None:
        self._file.write(encode_line(sample))
        self.count += 1

    def write_all(self, samples: Iterable[Sample]) -> None:
        for sample in samples:
            self.write(sample)

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> TraceWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


_line_decoder = msgspec.json.Decoder(TraceLine)


# Lines are decoded a block at a time (msgspec's decode_lines), a good deal faster than one by one.
BLOCK_BYTES = 1 << 20


def _blocks(path: Path) -> Iterator[tuple[int, bytes]]:
    """(number of its first line, block of whole lines) through the file; the last line may lack its newline."""
    first = 1
    rest = b""
    with _open(path, "rb") as file:
        try:
            while data := file.read(BLOCK_BYTES):
                data = rest + data
                cut = data.rfind(b"\n") + 1
                block, rest = data[:cut], data[cut:]
                if block:
                    yield first, block
                    first += block.count(b"\n")
        except (OSError, EOFError) as error:  # truncated or corrupt gzip
            raise TraceError(f"{path}: cannot read: {error}") from None
    if rest.strip():
        yield first, rest


def iter_lines(path: str | os.PathLike[str]) -> Iterator[TraceLine]:
    """The samples of a trace in file order. A bad line raises TraceError naming the file and line."""
    path = Path(path)
    for first, block in _blocks(path):
        try:
            samples = _line_decoder.decode_lines(block)
        except (msgspec.ValidationError, msgspec.DecodeError):
            # The slow path finds the line and names the field and value; only taken on a bad block.
            for number, line in enumerate(block.split(b"\n"), first):
                if line.strip():
                    try:
                        _line_decoder.decode(line)
                    except (msgspec.ValidationError, msgspec.DecodeError):
                        raise TraceError(f"{path}:{number}: {_explain_line(line)}") from None
            raise
        yield from samples


def _explain_line(line: bytes) -> str:
    try:
        decode(TraceLine, line)  # type: ignore[arg-type]
    except FieldError as error:
        return str(error)
    raise AssertionError("a line msgspec rejected decoded on the second try")


def read_trace(path: str | os.PathLike[str], *, chunk: int = DEFAULT_CHUNK) -> Iterator[TraceLine]:
    """The samples of a trace in stable ``ts`` order (ties keep file order), with bounded memory.

    A trace in order already (as the probes write them) streams as it is, after a quick pass that reads
    only the times. Otherwise up to ``chunk`` samples are sorted in memory; a longer trace is cut into
    sorted runs kept in temporary files, then merged: ``heapq.merge`` is stable across its inputs and run
    i holds earlier lines than run i+1, so ties keep file order there too.
    """
    if _in_order(Path(path)):
        yield from iter_lines(path)
        return
    lines = iter_lines(path)
    block = _take(lines, chunk)
    following = _take(lines, chunk)
    if not following:
        block.sort(key=_by_ts)  # list.sort is stable
        yield from block
        return
    with tempfile.TemporaryDirectory(prefix="migwatch-sort-") as spill:
        runs: list[Iterator[TraceLine]] = []
        while block:
            block.sort(key=_by_ts)
            run = Path(spill) / f"{len(runs)}.jsonl"
            run.write_bytes(b"".join(encode_line(sample) for sample in block))
            runs.append(iter_lines(run))
            block, following = following, _take(lines, chunk)
        yield from heapq.merge(*runs, key=_by_ts)


class _Time(msgspec.Struct):
    ts: float


_time_decoder = msgspec.json.Decoder(_Time)


def _in_order(path: Path) -> bool:
    """True when the lines' times never decrease; decodes nothing but ``ts`` (a bad line: False, and the
    full read reports it)."""
    last = -math.inf
    try:
        for _, block in _blocks(path):
            for time in _time_decoder.decode_lines(block):
                if time.ts < last:
                    return False
                last = time.ts
    except (msgspec.ValidationError, msgspec.DecodeError, TraceError):
        return False
    return True


def _take(lines: Iterator[TraceLine], count: int) -> list[TraceLine]:
    block = []
    for sample in lines:
        block.append(sample)
        if len(block) >= count:
            break
    return block
