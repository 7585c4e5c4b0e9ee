"""The ``migwatch`` command: one console script, one verb per job (CONTRACT section 5).

Exit codes: 0 done, 1 the job failed or is not available yet, 2 bad usage, configuration or input.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable, Sequence
from importlib.metadata import entry_points
from pathlib import Path
from typing import TYPE_CHECKING

from kafka.errors import KafkaError

from migwatch import silence_admin
from migwatch.compacted_listing import show
from migwatch.contract import config as config_module
from migwatch.contract.codec import encode, to_builtins
from migwatch.contract.config import AlertLinks, KafkaSettings
from migwatch.contract.detector_settings import DEFAULTS, DetectorSettings
from migwatch.contract.fields import FieldError
from migwatch.contract.records import Target
from migwatch.contract.topics import TopicNames
from migwatch.kafka_io.compacted import CompactedTopic

if TYPE_CHECKING:
    from migwatch.detectors.target_group import Directory

EXIT_FAILED = 1
EXIT_USAGE = 2


def _config_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config", required=True, metavar="F", help="TOML config file (MIGWATCH_* variables override it)"
    )


# Verbs that other packages add: an entry point of this group names a function that takes the verbs'
# subparsers and adds its own (``parser.set_defaults(handler=...)``). The developers' package adds `lab` and
# `kafka` this way, so that the product imports nothing of it.
PLUGIN_VERBS = "migwatch.verbs"


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="migwatch",
        description="Detect live migration of virtual machines from outside: ICMP and NTP probes, Kafka, "
        "Faust workers, scored alerts for a SIEM.",
    )
    verbs = parser.add_subparsers(dest="verb", metavar="VERB", required=True)

    def verb(name: str, help_text: str) -> argparse.ArgumentParser:
        sub = verbs.add_parser(name, help=help_text, description=help_text)
        sub.set_defaults(handler=_HANDLERS[name])
        return sub

    _add_running_verbs(verb)
    _add_trace_verbs(verb)
    _add_kafka_verbs(verb)
    for plugin in sorted(entry_points(group=PLUGIN_VERBS), key=lambda point: point.name):
        plugin.load()(verbs)
    return parser


def _add_running_verbs(verb: Callable[[str, str], argparse.ArgumentParser]) -> None:
    """The verbs that watch targets: probe, worker, watch, record."""
    _config_argument(verb("probe", "run a probe worker that publishes samples to Kafka"))
    worker = verb("worker", "run a Faust stream worker (detectors, tables, alerts, web status)")
    _config_argument(worker)
    worker.add_argument(
        "--loglevel", choices=["debug", "info", "warning", "error"], help="log level (default: [logging] level)"
    )
    watch = verb("watch", "everything in one process, no Kafka: probe, detect, print alerts (JSON Lines)")
    _config_argument(watch)
    watch.add_argument("--out", type=Path, help="also append the alerts to this JSON Lines file")
    watch.add_argument("--duration", type=float, help="seconds to run (default: until Ctrl-C)")
    record = verb("record", "probe straight into a trace file")
    _config_argument(record)
    record.add_argument("--out", required=True, metavar="T", help="trace file to write (.gz compresses)")
    record.add_argument("--duration", required=True, type=float, metavar="S", help="seconds to record")


def _add_trace_verbs(verb: Callable[[str, str], argparse.ArgumentParser]) -> None:
    """The verbs that read trace files: replay, publish, eval, plot."""
    replay = verb("replay", "run the detectors over a trace, write the alerts as JSON Lines")
    replay.add_argument("--trace", required=True, metavar="T")
    replay.add_argument("--out", required=True, metavar="A")
    replay.add_argument("--config", metavar="F", help="take the [detectors] settings and the targets from this config")
    evaluate = verb("eval", "score the detectors on a labelled trace")
    evaluate.add_argument("--trace", required=True, metavar="T")
    evaluate.add_argument("--labels", required=True, metavar="L")
    evaluate.add_argument("--json", action="store_true", help="one JSON object instead of a table")
    evaluate.add_argument(
        "--config", metavar="F", help="take the [detectors] settings and the targets from this config"
    )
    publish = verb("publish", "publish a trace's samples into the sample topics through the probes' publisher")
    publish.add_argument("--trace", required=True, metavar="T")
    _config_argument(publish)
    publish.add_argument("--rate", type=float, metavar="R", help="samples/s (default: as fast as Kafka takes them)")
    publish.add_argument(
        "--batch", type=int, metavar="N", help="samples per message at most (default: [probe] batch_max_samples; "
        "1: one sample per message, as before batches)",
    )  # fmt: skip
    plot = verb("plot", "chart RTT, unanswered pings and clock offset of one target")
    plot.add_argument("--trace", required=True, metavar="T")
    plot.add_argument("--target", required=True, metavar="ID")
    plot.add_argument("--out", required=True, metavar="P.png")
    plot.add_argument("--labels", metavar="L")
    plot.add_argument("--alerts", metavar="A", help="alerts as JSON Lines (migwatch replay --out): marked on the chart")
    plot.add_argument("--host", action="append", default=[], metavar="ID",
                      help="a hypervisor whose RTT is drawn beside the target's (repeatable; a labelled "
                           "migration's source and destination are drawn anyway)")  # fmt: skip


def _add_kafka_verbs(verb: Callable[[str, str], argparse.ArgumentParser]) -> None:
    """The config check and the verbs that manage the topics: config, targets, alerts."""
    _config_argument(verb("config", "validate a config file and print the settings in effect as JSON"))
    targets = verb("targets", "manage the watched targets on the compacted targets topic")
    targets.add_argument(
        "action",
        choices=["push", "remove", "list"],
        help="push the config's targets, remove the ids given, or list the targets in force",
    )
    targets.add_argument("ids", nargs="*", metavar="ID", help="remove: the target ids to remove")
    _config_argument(targets)
    silence_admin.add_arguments(verb("silences", "manage maintenance windows on the compacted silences topic"))
    alerts = verb(
        "alerts",
        "read the alerts topic: tail prints each alert as a JSON line; ship indexes them into OpenSearch or "
        "Elasticsearch (--to URL), at least once",
    )
    alerts.add_argument("action", choices=["tail", "ship"])
    alerts.add_argument("--from-beginning", action="store_true", help="tail: start at the oldest alert kept")
    alerts.add_argument("--count", type=int, metavar="N", help="stop after N alerts")
    alerts.add_argument("--idle", type=float, metavar="S", help="stop when no alert came for S seconds")
    alerts.add_argument("--to", metavar="URL", help="ship: the search engine, http(s)://[user:password@]host:port")
    alerts.add_argument("--ca", metavar="FILE", help="ship: CA bundle of an https engine")
    alerts.add_argument("--index", default="migwatch-alerts", help="ship: the index (default %(default)s)")
    alerts.add_argument("--group", default="migwatch-shipper", help="ship: consumer group (default %(default)s)")
    alerts.add_argument("--batch", type=int, default=500, help="ship: alerts per bulk request (default %(default)s)")
    alerts.add_argument("--no-template", action="store_true", help="ship: do not put the index template")
    _config_argument(alerts)


def _show_config(args: argparse.Namespace) -> int:
    settings = config_module.load(args.config)
    shown = to_builtins(settings)
    if shown["kafka"]["sasl_password"]:  # the settings in effect, but never the secret itself
        shown["kafka"]["sasl_password"] = "(set, not shown)"
    print(json.dumps(shown, indent=2))
    print(f"{args.config}: OK, {len(settings.targets)} targets", file=sys.stderr)
    return 0


def targets_topic(kafka: KafkaSettings) -> CompactedTopic[Target]:
    return CompactedTopic(kafka, TopicNames(kafka.topic_prefix).targets, Target, lambda target: target.id)


def _targets(args: argparse.Namespace) -> int:
    settings = config_module.load(args.config)
    topic = targets_topic(settings.kafka)
    if args.action == "push":
        if args.ids:
            raise FieldError("targets push: takes no ids; it pushes the targets of the config file")
        count = topic.put(settings.targets)
        print(f"pushed {count} targets to {settings.kafka.topic_prefix}targets")
    elif args.action == "remove":
        if not args.ids:
            raise FieldError("targets remove: name at least one target id")
        count = topic.remove(args.ids)
        print(f"removed {count} targets from {settings.kafka.topic_prefix}targets")
    else:
        show(topic, "targets", lambda target: target.id)
    return 0


def _replay(args: argparse.Namespace) -> int:
    from migwatch.replay import replay

    settings, directory, links = _detectors_of(args.config)
    with open(args.out, "wb") as out:
        for alert in replay(args.trace, settings, directory=directory, links=links):
            out.write(encode(alert) + b"\n")
    return 0


def _detectors_of(path: str | None) -> tuple[DetectorSettings, Directory, AlertLinks]:
    """The detector settings, targets and silences, and the alerts' links of a config file (the defaults and
    none without one)."""
    from migwatch.detectors.target_group import Directory  # the detectors load river: only verbs that run them

    if path is None:
        return DEFAULTS, Directory(), AlertLinks()
    config = config_module.load(path)
    return config.detectors, Directory.of(config.targets, config.silences), config.alerts


def _eval(args: argparse.Namespace) -> int:
    from migwatch.contract.labels import read_labels
    from migwatch.detectors.evaluate import alert_keys, score, table
    from migwatch.replay import replay

    labels = read_labels(args.labels)  # a bad labels file fails before the long replay
    settings, directory, _ = _detectors_of(args.config)
    replayed = replay(args.trace, settings, directory=directory)
    result = score(alert_keys(replayed), labels)
    print(json.dumps(result) if args.json else table(result))
    return 0


def _publish(args: argparse.Namespace) -> int:
    from migwatch.publish_trace import PublishError, publish

    settings = config_module.load(args.config)
    if args.rate is not None and not 0 < args.rate <= 10_000_000:
        raise FieldError(f"--rate: must be > 0 and <= 10000000 samples/s, got {args.rate!r}")
    batch = settings.probe.batch_max_samples if args.batch is None else args.batch
    if not 1 <= batch <= 10_000:
        raise FieldError(f"--batch: must be between 1 and 10000, got {batch!r}")
    if not Path(args.trace).is_file():
        raise FieldError(f"--trace: no such file, got {args.trace!r}")
    try:
        publish(settings.kafka, args.trace, rate=args.rate, batch_max_samples=batch,
                linger_s=settings.probe.batch_linger_ms / 1000)  # fmt: skip
    except PublishError as error:
        print(f"migwatch: error: {error}", file=sys.stderr)
        return EXIT_FAILED
    return 0


def _probe(args: argparse.Namespace) -> int:
    from migwatch.probes.worker import run

    run(config_module.load(args.config))
    return 0


def _alerts(args: argparse.Namespace) -> int:
    settings = config_module.load(args.config)
    if args.count is not None and args.count < 1:
        raise FieldError(f"--count: must be >= 1, got {args.count!r}")
    if args.idle is not None and not args.idle > 0:
        raise FieldError(f"--idle: must be > 0 s, got {args.idle!r}")
    if args.action == "tail":
        from migwatch.alerts_tail import tail

        tail(settings.kafka, sys.stdout.buffer, from_beginning=args.from_beginning, count=args.count,
             idle_s=args.idle)  # fmt: skip
        return 0
    from migwatch.alerts_ship import Engine, ship

    if not args.to:
        raise FieldError("--to: alerts ship needs the search engine's URL, got nothing")
    if not 1 <= args.batch <= 10_000:
        raise FieldError(f"--batch: must be between 1 and 10000, got {args.batch!r}")
    if not re.fullmatch(r"[a-z0-9][a-z0-9._-]{0,254}", args.index):
        raise FieldError(f"--index: must be a lowercase index name, got {args.index!r}")
    ship(
        settings.kafka, Engine(args.to, args.ca), index=args.index, group=args.group, batch=args.batch,
        template=not args.no_template, count=args.count, idle_s=args.idle,
    )  # fmt: skip
    return 0


def _worker(args: argparse.Namespace) -> int:
    from migwatch.streams.worker import run

    run(config_module.load(args.config), args.loglevel)
    return 0


def _watch(args: argparse.Namespace) -> int:
    from migwatch.watch import run

    settings = config_module.load(args.config)
    if args.duration is not None and not 0 < args.duration <= 30 * 86400:
        raise FieldError(f"--duration: must be > 0 s and at most 30 days, got {args.duration!r}")
    run(settings, args.out, args.duration)
    return 0


def _record(args: argparse.Namespace) -> int:
    from migwatch.recorder import run

    settings = config_module.load(args.config)
    if not 0 < args.duration <= 30 * 86400:
        raise FieldError(f"--duration: must be > 0 s and at most 30 days, got {args.duration!r}")
    run(settings, args.out, args.duration)
    return 0


def _plot(args: argparse.Namespace) -> int:
    from migwatch.plot import plot

    pings, clocks = plot(args.trace, args.target, args.out, labels=args.labels, alerts=args.alerts, hosts=args.host)
    print(f"{args.out}: {pings} pings and {clocks} NTP answers of {args.target}", file=sys.stderr)
    return 0


_HANDLERS: dict[str, Callable[[argparse.Namespace], int]] = {
    "config": _show_config,
    "targets": _targets,
    "silences": silence_admin.main,
    "replay": _replay,
    "publish": _publish,
    "eval": _eval,
    "plot": _plot,
    "record": _record,
    "probe": _probe,
    "worker": _worker,
    "watch": _watch,
    "alerts": _alerts,
}


def main(argv: Sequence[str] | None = None) -> int:
    args = _build_parser().parse_args(argv)
    try:
        handler: Callable[[argparse.Namespace], int] = args.handler
        return handler(args)
    except OSError as error:
        print(f"migwatch: error: {error.filename or ''}: {error.strerror or error}", file=sys.stderr)
        return EXIT_USAGE
    except (config_module.ConfigError, FieldError) as error:
        print(f"migwatch: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except KafkaError as error:
        print(f"migwatch: Kafka error: {error}", file=sys.stderr)  # kafka-python names the error class
        return EXIT_FAILED
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
