"""``migwatch silences``: maintenance windows on the compacted ``silences`` topic (see contract/silences.py).

migwatch silences add --config c.toml --id patch-tue --site fra-1 --start 2026-12-08T22:00:00Z --duration 7200
migwatch silences add --config c.toml --id move-web-01 --target web-01 --to hv-2 --duration 3600
migwatch silences import --config c.toml planned-moves.jsonl    # a JSON line per planned move
migwatch silences list --config c.toml
migwatch silences remove --config c.toml patch-tue
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import msgspec

from migwatch.compacted_listing import show
from migwatch.contract import config as config_module
from migwatch.contract.codec import encode
from migwatch.contract.config import KafkaSettings
from migwatch.contract.fields import FieldError
from migwatch.contract.silences import PlannedMove, Silence, from_planned_move, seconds
from migwatch.contract.topics import TopicNames
from migwatch.kafka_io.compacted import CompactedTopic


def silences_topic(kafka: KafkaSettings) -> CompactedTopic[Silence]:
    return CompactedTopic(kafka, TopicNames(kafka.topic_prefix).silences, Silence, lambda silence: silence.id)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    what = "add one window, list those in force, remove the ids given, import planned moves"
    parser.add_argument("action", choices=["add", "list", "remove", "import"], help=what)
    parser.add_argument("names", nargs="*", metavar="ID|FILE", help="remove: silence ids; import: JSON Lines files")
    parser.add_argument("--config", required=True, metavar="F", help="TOML config file (its [kafka] section)")
    add = parser.add_argument_group("add")
    add.add_argument("--id", help="the window's id (a new add with the same id replaces it)")
    add.add_argument("--start", help="UNIX seconds or ISO 8601 with a zone (default: now)")
    add.add_argument("--end", help="UNIX seconds or ISO 8601 with a zone")
    add.add_argument("--duration", type=float, metavar="S", help="seconds from the start (instead of --end)")
    add.add_argument("--target", action="append", default=[], metavar="ID", help="a target it covers (repeat)")
    add.add_argument("--site", action="append", default=[], help="a site it covers (repeat)")
    add.add_argument("--label", action="append", default=[], metavar="K=V", help="a label it requires (repeat)")
    add.add_argument("--to", action="append", default=[], metavar="HOST", help="a host the targets may move to")
    add.add_argument("--reason", default="")
    add.add_argument("--by", default="")


def main(args: argparse.Namespace) -> int:
    kafka = config_module.load(args.config).kafka
    topic = silences_topic(kafka)
    if args.action == "add":
        if args.names:
            raise FieldError("silences add: takes no positional names; give the window with --id, --start, ...")
        silence = _from_arguments(args)
        topic.put([silence])
        print(f"added {silence.id} to {topic.topic}: {encode(silence).decode()}")
    elif args.action == "remove":
        if not args.names:
            raise FieldError("silences remove: name at least one silence id")
        print(f"removed {topic.remove(args.names)} silences from {topic.topic}")
    elif args.action == "import":
        if not args.names:
            raise FieldError("silences import: name at least one JSON Lines file of planned moves")
        windows = [window for name in args.names for window in _planned(Path(name))]
        print(f"imported {topic.put(windows)} planned moves into {topic.topic}")
    else:
        show(topic, "silences", lambda silence: (silence.start, silence.id))
    return 0


def _from_arguments(args: argparse.Namespace) -> Silence:
    if not args.id:
        raise FieldError("--id: a silence needs an id, got None")
    start = seconds("--start", args.start) if args.start else time.time()
    if (args.end is None) == (args.duration is None):
        raise FieldError(f"--end/--duration: give exactly one, got {args.end!r} and {args.duration!r}")
    end = seconds("--end", args.end) if args.end else start + args.duration
    labels = {}
    for item in args.label:
        key, equals, value = item.partition("=")
        if not equals or not key:
            raise FieldError(f"--label: must be KEY=VALUE, got {item!r}")
        labels[key] = value
    return Silence(
        id=args.id, start=start, end=end, targets=args.target, sites=args.site, labels=labels, to_hosts=args.to,
        reason=args.reason, by=args.by,
    )  # fmt: skip


def _planned(path: Path) -> list[Silence]:
    """The silences of a JSON Lines file of planned moves; a bad line fails the import, named."""
    windows = []
    with path.open("rb") as lines:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                windows.append(from_planned_move(msgspec.json.decode(line, type=PlannedMove), by=path.name))
            except (msgspec.ValidationError, msgspec.DecodeError, FieldError) as error:
                raise FieldError(f"{path}:{number}: {error}") from None
    return windows
