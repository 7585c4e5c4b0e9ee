"""``migwatch worker``: checks the topics, then runs the Faust app until SIGINT/SIGTERM."""

from __future__ import annotations

import logging

import faust

from migwatch import kafka_clients
from migwatch.config import Config
from migwatch.streams.app import create_app
from migwatch.topics import ensure_topics

log = logging.getLogger(__name__)


def prepare_topics(config: Config) -> None:
    """Create the contract topics that are missing, with ``kafka.partitions``; refuse ones laid out otherwise.

    Faust would auto-create a missing source topic with its own default count and then crash with
    PartitionsMismatch against its changelogs; checked here, the error names the topic and the counts.
    """
    kafka = config.kafka
    admin = kafka_clients.admin(kafka)
    try:
        ensure_topics(admin, kafka.topic_prefix, kafka.partitions)
    finally:
        admin.close()


def run(config: Config, loglevel: str = "warning") -> None:
    prepare_topics(config)
    app = create_app(config)
    worker = config.worker
    web = f"http://{worker.web_bind}:{worker.web_port}/" if worker.web_port else "no web server"
    print(f"migwatch worker {worker.name}: group {worker.app_id}, {web}", flush=True)
    faust.Worker(app, loglevel=loglevel, quiet=True).execute_from_commandline()
