"""``migwatch worker``: checks the topics, then runs the Faust app until SIGINT/SIGTERM."""

from __future__ import annotations

import logging
from collections import ChainMap

import faust
import msgspec
from kafka.admin import NewTopic
from mode.utils.times import want_seconds

from migwatch.contract import logs
from migwatch.contract.config import Config
from migwatch.contract.records import HostView, StatusChunk, Target
from migwatch.contract.silences import Silence
from migwatch.contract.topics import TopicNames
from migwatch.detectors.target_group import Directory
from migwatch.kafka_io import clients
from migwatch.kafka_io.compacted import CompactedTopic
from migwatch.kafka_io.compacted_follower import CompactedFollower
from migwatch.kafka_io.topic_admin import broker_count, create_missing, ensure_topics
from migwatch.streams.app import WorkerApp

log = logging.getLogger(__name__)


def prepare_topics(config: Config, app: faust.App) -> None:
    """Create the contract topics that are missing, with ``kafka.partitions``; refuse ones laid out otherwise.
    Then the app's changelog topics, and wait until the broker describes them all.

    Faust would auto-create a missing source topic with its own default count and then crash with
    PartitionsMismatch against its changelogs; checked here, the error names the topic and the counts.
    Faust creates its changelogs itself too, but joins the group at once: on a busy broker its consumer's
    first metadata may lack a changelog made a moment before, and every table write then fails with
    PartitionsMismatch ("0 partitions") until the next metadata refresh (seen here on a broker busy deleting
    600 topics: a new worker dead-lettered all its first samples).
    """
    kafka = config.kafka
    admin = clients.admin(kafka)
    try:
        ensure_topics(admin, kafka.topic_prefix, kafka.partitions, replication=kafka.replication_factor,
                      min_insync=kafka.min_insync_replicas)  # fmt: skip
        create_missing(admin, faust_topics(app, kafka.min_insync_replicas))
    finally:
        admin.close()


def faust_topics(app: faust.App, min_insync: int = 1) -> list[NewTopic]:
    """The app's table changelogs, laid out as Faust declares them (its own transport's topic config), and its
    partition assignor's topic (one partition), with ``min_insync`` copies in sync for a write."""
    # Faust would create the assignor's topic as it starts, without min.insync.replicas (its own naming).
    topics = [NewTopic(f"{app.conf.id}-__assignor-__leader", 1, app.conf.topic_replication_factor,
                       topic_configs={"min.insync.replicas": str(min_insync)})]  # fmt: skip
    for table in app.tables.values():
        topic = table.changelog_topic
        retention_ms = int(want_seconds(topic.retention) * 1000) if topic.retention else None
        config = {**app.transport._topic_config(retention_ms, topic.compacting, topic.deleting), **(topic.config or {}),
                  "min.insync.replicas": min_insync}  # fmt: skip
        topics.append(NewTopic(
            topic.get_topic_name(), topic.partitions or app.conf.topic_partitions,
            topic.replicas or app.conf.topic_replication_factor,
            topic_configs={key: str(value) for key, value in config.items()},
        ))  # fmt: skip
    return topics


def follow_directory(config: Config) -> tuple[CompactedFollower, Directory]:
    """Follow the targets, silences, hosts and status topics whole; the directory of what they hold, with the
    config's own targets and silences over them."""
    kafka = config.kafka
    names = TopicNames(kafka.topic_prefix)
    follower = CompactedFollower(kafka, [
        CompactedTopic(kafka, names.targets, Target, lambda target: target.id),
        CompactedTopic(kafka, names.silences, Silence, lambda silence: silence.id),
        CompactedTopic(kafka, names.hosts, HostView, lambda view: view.host),
        CompactedTopic(kafka, names.status, StatusChunk, lambda chunk: chunk.key),
    ])  # fmt: skip
    tables, own = follower.tables, Directory.of(config.targets, config.silences)
    directory = Directory(
        targets=ChainMap(dict(own.targets), tables[names.targets]),
        silences=ChainMap(dict(own.silences), tables[names.silences]),
        hosts=tables[names.hosts],
    )
    return follower, directory


def with_replication(config: Config) -> Config:
    """The config with the replication of the cluster it names (``kafka.replication_factor`` and
    ``kafka.min_insync_replicas`` picked where 0); FieldError when the cluster cannot hold it."""
    admin = clients.admin(config.kafka)
    try:
        brokers = broker_count(admin)
    finally:
        admin.close()
    return msgspec.structs.replace(config, kafka=config.kafka.replication_for(brokers))


def run(config: Config, loglevel: str | None = None) -> None:
    """Run the worker until it is stopped; ``loglevel`` overrides the config's ``[logging] level``."""
    config = with_replication(config)
    follower, directory = follow_directory(config)
    statuses = follower.tables[TopicNames(config.kafka.topic_prefix).status]
    app = WorkerApp(config, directory=directory, status_chunks=statuses.snapshot).app
    prepare_topics(config, app)
    if not follower.start(wait_s=config.worker.rebalance_timeout_s):
        log.warning("the targets, silences, hosts and status topics were not read within %.0f s; going on, "
                    "following them", config.worker.rebalance_timeout_s)  # fmt: skip
    worker = config.worker
    web = f"http://{worker.web_bind}:{worker.web_port}/" if worker.web_port else "no web server"
    print(f"migwatch worker {worker.name}: group {worker.app_id}, {web}", flush=True)
    logging_settings = config.logging if loglevel is None else msgspec.structs.replace(config.logging, level=loglevel)
    faust.Worker(
        app, quiet=True, loglevel=logging_settings.level, logging_config=logs.logging_config(logging_settings)
    ).execute_from_commandline()
