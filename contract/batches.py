"""Sample batches on the ``ping`` and ``ntp`` topics (CONTRACT section 1): one Kafka message, many samples.

A batch is the JSON object ``{"v":1,"samples":[<sample>,<sample>,...]}``, each sample the record of CONTRACT
section 2 (all of the topic's record type, all of targets of the message's partition, in ``ts`` order),
and the message carries the header ``migwatch-batch: json``. A message without that header is a single
sample, as before batches: readers take both (a rolling upgrade mixes them).

JSON, not MessagePack: the probe's samples are JSON already, so a batch is built by joining their bytes
(no second encoding), the spill file stays one line per sample, and the broker's lz4 compression evens the
sizes out (500 ping samples: 70.7 kB JSON / 50.4 kB MessagePack, 11.8 kB / 10.7 kB compressed; decoding
1.32 / 1.21 us per sample: benchmarks/record_codec.py).

    >>> batch = encode_batch([b'{"v":1,"seq":0}', b'{"v":1,"seq":1}'])
    >>> batch
    b'{"v":1,"samples":[{"v":1,"seq":0},{"v":1,"seq":1}]}'
    >>> split_batch(batch)
    [b'{"v":1,"seq":0}', b'{"v":1,"seq":1}']
    >>> split_batch(b'{"v":1,"samples":{}}')
    Traceback (most recent call last):
    ...
    migwatch.contract.fields.FieldError: batch: samples: expected array, got {}
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import msgspec

from migwatch.contract.codec import explain
from migwatch.contract.fields import FieldError

HEADER = "migwatch-batch"
ENCODING = b"json"
# A batch is cut before this size (Kafka's default max.message.bytes is 1,048,588); a sample inside it is
# still held to the single record's cap (codec.MAX_RECORD_BYTES).
MAX_BATCH_BYTES = 1_000_000
_OPEN, _CLOSE = b'{"v":1,"samples":[', b"]}"
OVERHEAD = len(_OPEN) + len(_CLOSE)


class _Envelope(msgspec.Struct):
    v: int
    samples: list[msgspec.Raw]


_decoder = msgspec.json.Decoder(_Envelope)


def encode_batch(samples: Sequence[bytes]) -> bytes:
    """The batch of these encoded samples (joined as they are: no second encoding)."""
    return _OPEN + b",".join(samples) + _CLOSE


def is_batch(headers: Iterable[tuple[str, bytes]] | Mapping[str, bytes] | None) -> bool:
    """Whether a message's headers (pairs, as Kafka clients give them, or a mapping) mark it as a batch."""
    if isinstance(headers, Mapping):
        return HEADER in headers
    return any(name == HEADER for name, _ in headers or ())


def split_batch(value: bytes | None) -> list[bytes]:
    """The samples of a batch, each still encoded (decoded one by one: a bad one is its own dead letter);
    FieldError when the batch itself cannot be read."""
    if not value:
        raise FieldError("batch: must be a JSON object, got an empty message")
    if len(value) > MAX_BATCH_BYTES:
        raise FieldError(f"batch: must be at most {MAX_BATCH_BYTES} bytes, got {len(value)}")
    try:
        return [bytes(sample) for sample in _decoder.decode(value).samples]
    except msgspec.ValidationError as error:
        raise FieldError(f"batch: {explain(error, _document(value))}") from None
    except msgspec.DecodeError as error:
        raise FieldError(f"batch: not JSON ({error})") from None


def _document(value: bytes) -> object:
    try:
        return msgspec.json.decode(value)
    except msgspec.DecodeError:
        return None
