"""A real Apache Kafka for development, tests and the quickstart: fetched from Maven Central, run under java.

There is no Docker engine and no tarball download here, so the broker comes as jars: a tiny generated pom
asks Maven for ``org.apache.kafka:kafka_2.13`` and a logging backend, and ``copy-dependencies`` puts them
with their runtime dependencies in a cache folder, once. The broker runs as a single KRaft node (broker and
controller in one process) on 127.0.0.1 with a small heap; ``--brokers 3`` starts a cluster of three such
nodes (three JVMs of the same jars, one KRaft quorum; node N on port+2(N-1)) for replication tests.

    deploy/local/kafka start [--port 9092] [--partitions 8] [--brokers 1]   # fetch once, format, start, topics
    deploy/local/kafka status | stop | fetch | topics
"""

from __future__ import annotations

import argparse
import base64
import logging
import shutil
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from migwatch_dev.local_services import LocalService, LocalServiceError, cache_root

# The newest release that this project's tests show kafka-python, aiokafka and faust-streaming working
# against (README, "Which Kafka").
KAFKA_VERSION = "4.4.0"
LOG4J_VERSION = "2.24.3"
DEFAULT_PORT = 9092
DEFAULT_HEAP = "512m"
READY_TIMEOUT_S = 120.0

_POM = """<?xml version="1.0" encoding="UTF-8"?>
<!-- Written by migwatch_dev.local_kafka to fetch Apache Kafka's jars; nothing is built. -->
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>io.migwatch</groupId>
  <artifactId>local-kafka</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency>
      <groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId><version>{kafka}</version>
    </dependency>
    <!-- kafka_2.13's POM leaves the logging backend out, and Kafka 4 does not start without log4j-core. -->
    <dependency>
      <groupId>org.apache.logging.log4j</groupId><artifactId>log4j-core</artifactId><version>{log4j}</version>
    </dependency>
    <dependency>
      <groupId>org.apache.logging.log4j</groupId><artifactId>log4j-slf4j-impl</artifactId><version>{log4j}</version>
    </dependency>
  </dependencies>
</project>
"""

_SERVER_PROPERTIES = """# Written by migwatch_dev.local_kafka: one KRaft node, broker and controller in one process.
process.roles=broker,controller
node.id={node_id}
controller.quorum.voters={voters}
listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}
advertised.listeners=PLAINTEXT://127.0.0.1:{port}
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
log.dirs={data}
num.partitions=1
# Kafka's internal topics: a copy on each node of the cluster (one on a single node).
offsets.topic.replication.factor={replicas}
offsets.topic.num.partitions=8
transaction.state.log.replication.factor={replicas}
transaction.state.log.min.isr={min_isr}
share.coordinator.state.topic.replication.factor={replicas}
share.coordinator.state.topic.min.isr={min_isr}
# Consumers join at once instead of waiting 3 s for more members.
group.initial.rebalance.delay.ms=0
# The 128 MB default does not fit a small heap; the compacted topics here are small.
log.cleaner.dedupe.buffer.size=16777216
# Topics are created up front with the configured partition count (an auto-created source topic with
# another count crashes Faust with PartitionsMismatch).
auto.create.topics.enable=false
"""

_LOG4J2 = """status = warn
appender.out.type = Console
appender.out.name = out
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.out.ref = out
logger.kafka.name = kafka
logger.kafka.level = INFO
logger.state.name = state.change.logger
logger.state.level = WARN
"""


@dataclass(frozen=True)
class SaslSslListener:
    """A second listener speaking SASL_SSL with SCRAM-SHA-512, for clients of a secured cluster.

    The PLAINTEXT listener stays (on loopback) for the broker's own traffic. Users are created when the
    storage is formatted (``kafka-storage format --add-scram``), so a broker started with them needs
    ``fresh`` data.
    """

    port: int
    keystore: Path  # PEM: the broker's unencrypted PKCS#8 private key and its certificate chain
    users: dict[str, str]  # name -> password
    client_ca: Path | None = None  # PEM CA of client certificates; when set, clients must present one

    def properties(self) -> str:
        lines = [
            "sasl.enabled.mechanisms=SCRAM-SHA-512",
            "listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config="
            "org.apache.kafka.common.security.scram.ScramLoginModule required;",
            "listener.name.sasl_ssl.ssl.keystore.type=PEM",
            f"listener.name.sasl_ssl.ssl.keystore.location={self.keystore}",
        ]
        if self.client_ca is not None:
            lines += [
                "listener.name.sasl_ssl.ssl.truststore.type=PEM",
                f"listener.name.sasl_ssl.ssl.truststore.location={self.client_ca}",
                "listener.name.sasl_ssl.ssl.client.auth=required",
            ]
        return "\n".join(lines) + "\n"

    def scram_arguments(self) -> list[str]:
        for name, password in self.users.items():
            if not name.replace("-", "").replace("_", "").isalnum() or any(c in password for c in ",=[]\n"):
                raise LocalKafkaError(f"SCRAM user {name!r}: names are letters, digits, '-', '_'; passwords "
                                      "have no ',', '=', '[', ']' or newline")  # fmt: skip
        return [arg for name, password in self.users.items()
                for arg in ("--add-scram", f"SCRAM-SHA-512=[name={name},password={password}]")]  # fmt: skip


class LocalKafkaError(LocalServiceError):
    """Something the local broker could not do; the message says what and where to look."""


@dataclass(frozen=True)
class LocalKafka(LocalService):
    """One local broker: where its jars are cached and where it keeps its data, log and pid."""

    NAME, TITLE, LOG, MAIN_CLASS = "kafka", "the broker", "kafka.log", b"kafka.Kafka"
    ERROR = LocalKafkaError

    port: int = DEFAULT_PORT
    version: str = KAFKA_VERSION
    root: Path = field(default_factory=cache_root)
    heap: str = DEFAULT_HEAP
    secure: SaslSslListener | None = None
    node_id: int = 1
    voters: str = ""  # the cluster's controller.quorum.voters; empty: this node alone
    replicas: int = 1  # the nodes of its cluster: copies of Kafka's internal topics

    @property
    def controller_port(self) -> int:
        return self.port + 1

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def libs(self) -> Path:
        return self.root / f"kafka-{self.version}" / "libs"

    # ------------------------------------------------------------------------------------------ fetch

    def fetch(self) -> float:
        """Download the jars once; returns the seconds it took (0 when the cache had them)."""
        complete = self.libs / ".complete"
        if complete.exists():
            return 0.0
        started = time.monotonic()
        work = self.libs.parent
        work.mkdir(parents=True, exist_ok=True)
        (work / "pom.xml").write_text(_POM.format(kafka=self.version, log4j=LOG4J_VERSION))
        partial = work / "libs.partial"
        shutil.rmtree(partial, ignore_errors=True)
        print(f"fetching Apache Kafka {self.version} jars from Maven Central into {self.libs} ...", flush=True)
        self.maven([
            "-f", str(work / "pom.xml"),
            # Maven 3.8's bundled dependency plugin is too old for this; name a current one.
            "org.apache.maven.plugins:maven-dependency-plugin:3.7.1:copy-dependencies",
            "-DincludeScope=runtime", f"-DoutputDirectory={partial}",
        ], f"Apache Kafka {self.version}")  # fmt: skip
        shutil.rmtree(self.libs, ignore_errors=True)
        partial.rename(self.libs)
        complete.touch()
        return time.monotonic() - started

    # ----------------------------------------------------------------------------------- start, stop

    def start(
        self,
        *,
        fresh: bool = False,
        timeout: float = READY_TIMEOUT_S,
        cluster_id: str | None = None,
        wait: bool = True,
    ) -> tuple[int, float]:
        """Start the broker unless it runs; wait until a client's metadata call succeeds (unless not ``wait``).

        Returns (pid, seconds until ready). ``fresh`` wipes the data of an earlier run first; new data is
        formatted for ``cluster_id`` (the same on every node of a cluster; default: a new one).
        """
        running = self.running(timeout)
        if running is not None:
            return running, 0.0
        self.fetch()
        data = self.run_dir / "data"
        if fresh:
            shutil.rmtree(data, ignore_errors=True)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        properties = self.run_dir / "server.properties"
        text = _SERVER_PROPERTIES.format(
            port=self.port, controller_port=self.controller_port, data=data, node_id=self.node_id,
            voters=self.voters or f"{self.node_id}@127.0.0.1:{self.controller_port}", replicas=self.replicas,
            min_isr=max(1, self.replicas - 1),
        )  # fmt: skip
        if self.secure is not None:
            secure = f"SASL_SSL://127.0.0.1:{self.secure.port}"
            text = (
                text.replace("CONTROLLER://", f"{secure},CONTROLLER://", 1)
                .replace(f"advertised.listeners=PLAINTEXT://127.0.0.1:{self.port}",
                         f"advertised.listeners=PLAINTEXT://127.0.0.1:{self.port},{secure}")
                .replace("CONTROLLER:PLAINTEXT", "CONTROLLER:PLAINTEXT,SASL_SSL:SASL_SSL")
                + self.secure.properties()
            )  # fmt: skip
        properties.write_text(text)
        (self.run_dir / "log4j2.properties").write_text(_LOG4J2)
        if not (data / "meta.properties").exists():
            scram = self.secure.scram_arguments() if self.secure is not None else []
            self._java("kafka.tools.StorageTool", "format", "-t", cluster_id or _cluster_id(), "-c", str(properties),
                       *scram)  # fmt: skip
        return self.launch([*self._java_command(), "kafka.Kafka", str(properties)], timeout, wait=wait)

    def ports(self) -> tuple[int, ...]:
        return (self.port, self.controller_port, *([self.secure.port] if self.secure else []))

    def ready(self) -> bool:
        """True when a client's metadata call succeeds (an open port is not enough: KRaft starts later)."""
        from kafka import KafkaAdminClient
        from kafka.errors import KafkaError

        # Refused connections are expected here; quiet them for this call only, since other clients in the
        # process read kafka-python's warnings for the reason a connection failed (migwatch.kafka_io.clients).
        kafka_log = logging.getLogger("kafka")
        level = kafka_log.level
        kafka_log.setLevel(logging.CRITICAL)
        try:
            # Short timeouts: the caller polls, and a stopped broker must read as not ready at once.
            admin = KafkaAdminClient(
                bootstrap_servers=self.bootstrap, request_timeout_ms=5000, bootstrap_timeout_ms=3000
            )
        except (KafkaError, OSError):
            return False
        finally:
            kafka_log.setLevel(level)
        try:
            return bool(admin.describe_cluster().get("brokers"))
        except (KafkaError, OSError):
            return False
        finally:
            admin.close()

    # --------------------------------------------------------------------------------------- helpers

    def _java_command(self) -> list[str]:
        return [
            "java",
            f"-Xmx{self.heap}",
            "-Xms128m",
            "-XX:+UseG1GC",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={self.run_dir / 'log4j2.properties'}",
            f"-Dkafka.logs.dir={self.run_dir}",
            "-cp",
            f"{self.libs}/*",
        ]

    def _java(self, *args: str) -> None:
        result = subprocess.run([*self._java_command(), *args], capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise LocalKafkaError(f"{args[0]} failed:\n{(result.stdout + result.stderr).strip()[-2000:]}")


@dataclass(frozen=True)
class LocalKafkaCluster:
    """``size`` local KRaft nodes of one cluster, each broker and controller: node N listens on port+2(N-1)
    (its controller on the port after). Started together, since a quorum answers only once most of it runs."""

    size: int = 3
    port: int = DEFAULT_PORT
    version: str = KAFKA_VERSION
    root: Path = field(default_factory=cache_root)
    heap: str = DEFAULT_HEAP

    @property
    def nodes(self) -> list[LocalKafka]:
        voters = ",".join(f"{n + 1}@127.0.0.1:{self.port + 2 * n + 1}" for n in range(self.size))
        return [LocalKafka(port=self.port + 2 * n, version=self.version, root=self.root, heap=self.heap,
                           node_id=n + 1, voters=voters, replicas=self.size) for n in range(self.size)]  # fmt: skip

    @property
    def bootstrap(self) -> str:
        return ",".join(node.bootstrap for node in self.nodes)

    def start(self, *, fresh: bool = False, timeout: float = READY_TIMEOUT_S) -> tuple[list[int], float]:
        """Start the nodes that do not run and wait until each answers; (their pids, seconds until ready)."""
        started, cluster_id = time.monotonic(), _cluster_id()
        nodes = self.nodes
        for node in nodes:
            node.start(fresh=fresh, timeout=timeout, cluster_id=cluster_id, wait=False)
        pids = []
        for node in nodes:
            pid = node.pid()
            if pid is None:
                raise LocalKafkaError(f"node {node.node_id} exited during start-up; see {node.log_file}")
            node.wait_ready(max(1.0, timeout - (time.monotonic() - started)), pid=pid)
            pids.append(pid)
        return pids, time.monotonic() - started

    def stop(self) -> bool:
        """Stop every node; whether any ran."""
        return any([node.stop() for node in self.nodes])


def _cluster_id() -> str:
    """A KRaft cluster id: 16 random bytes, URL-safe base64 without padding (as kafka-storage random-uuid).

    Like Kafka's own Uuid.randomUuid, never one that starts with "-": the storage tool would read it as an
    option (one id in 64 did, and failed the format).
    """
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


# -------------------------------------------------------------------------------------------------- CLI


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=["start", "stop", "status", "fetch", "topics"])
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="PLAINTEXT port; the controller uses port+1")
    parser.add_argument("--version", default=KAFKA_VERSION, help="Apache Kafka version from Maven Central")
    parser.add_argument("--heap", default=DEFAULT_HEAP, help="broker JVM heap (-Xmx)")
    parser.add_argument("--partitions", type=int, default=8, help="partitions of every contract topic")
    parser.add_argument("--topic-prefix", default="migwatch.", help="topic name prefix")
    parser.add_argument("--fresh", action="store_true", help="start: wipe the data of an earlier run")
    parser.add_argument("--no-topics", action="store_true", help="start: do not create the contract topics")
    parser.add_argument("--brokers", type=int, default=1, help="start/stop/status: nodes of the cluster (1 or 3)")


def run(args: argparse.Namespace) -> int:
    if args.brokers != 1:
        return _run_cluster(args)
    broker = LocalKafka(port=args.port, version=args.version, heap=args.heap)
    try:
        if args.action == "fetch":
            seconds = broker.fetch()
            print(
                f"Apache Kafka {broker.version} jars in {broker.libs}"
                + (f" (fetched in {seconds:.1f} s)" if seconds else " (cached)")
            )
        elif args.action == "start":
            fetch_s = broker.fetch()
            pid, start_s = broker.start(fresh=args.fresh)
            timing = f"fetched in {fetch_s:.1f} s, " if fetch_s else ""
            timing += f"ready in {start_s:.1f} s" if start_s else "already running"
            print(f"Apache Kafka {broker.version} listening on {broker.bootstrap} (pid {pid}; {timing})")
            print(f"  log: {broker.log_file}")
            if not args.no_topics:
                _print_topics(broker, args.topic_prefix, args.partitions)
        elif args.action == "topics":
            _print_topics(broker, args.topic_prefix, args.partitions)
        elif args.action == "stop":
            print("stopped" if broker.stop() else f"not running (port {broker.port})")
        else:
            pid = broker.pid()
            if pid is None:
                print(f"not running (port {broker.port})")
                return 3
            answer = "ready" if broker.ready() else "not answering"
            print(f"running: pid {pid}, {broker.bootstrap}, {answer}, log {broker.log_file}")
    except LocalServiceError as error:
        print(f"local kafka: error: {error}", file=sys.stderr)
        return 1
    return 0


def _run_cluster(args: argparse.Namespace) -> int:
    if not 2 <= args.brokers <= 5 or args.action not in ("start", "stop", "status"):
        print("local kafka: error: --brokers: 1, or 2 to 5 nodes with start, stop or status, got "
              f"{args.brokers!r} with {args.action}", file=sys.stderr)  # fmt: skip
        return 2
    cluster = LocalKafkaCluster(args.brokers, port=args.port, version=args.version, heap=args.heap)
    try:
        if args.action == "start":
            cluster.nodes[0].fetch()
            pids, seconds = cluster.start(fresh=args.fresh)
            print(f"Apache Kafka {cluster.version}: {args.brokers} nodes on {cluster.bootstrap} (pids "
                  f"{', '.join(map(str, pids))}; ready in {seconds:.1f} s)")  # fmt: skip
            if not args.no_topics:
                _print_topics(cluster.nodes[0], args.topic_prefix, args.partitions, replication=args.brokers)
        elif args.action == "stop":
            print("stopped" if cluster.stop() else f"not running (ports from {cluster.port})")
        else:
            running = [node for node in cluster.nodes if node.pid() is not None]
            print(f"{len(running)} of {args.brokers} nodes running: {', '.join(n.bootstrap for n in running)}")
            return 0 if len(running) == args.brokers else 3
    except LocalServiceError as error:
        print(f"local kafka: error: {error}", file=sys.stderr)
        return 1
    return 0


def _print_topics(broker: LocalKafka, prefix: str, partitions: int, *, replication: int = 1) -> None:
    from kafka import KafkaAdminClient

    from migwatch.contract.config import KafkaSettings
    from migwatch.kafka_io.topic_admin import TopicLayoutError, ensure_topics

    kafka = KafkaSettings().replication_for(replication)  # as a worker picks them on that cluster
    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
    try:
        for name, state in ensure_topics(admin, prefix, partitions, replication=kafka.replication_factor,
                                         min_insync=kafka.min_insync_replicas).items():  # fmt: skip
            print(f"  topic {name}: {state}")
    except TopicLayoutError as error:
        raise LocalKafkaError(str(error)) from None
    finally:
        admin.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="deploy/local/kafka", description=__doc__.split("\n\n")[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
