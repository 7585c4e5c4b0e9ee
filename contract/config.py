"""Configuration: a TOML file, then ``MIGWATCH_<SECTION>_<KEY>`` environment overrides, validated up front.

Every problem is a :class:`ConfigError` whose one-line message names the file or variable, the key and the
value; the CLI prints it and exits with code 2.

    >>> config = parse('[kafka]\\nbootstrap = "127.0.0.1:9092"\\n[[targets]]\\nid = "web-01"\\n'
    ...                'address = "192.0.2.10"\\n', source="example.toml", environ={})
    >>> config.targets[0].ping_interval_s
    1.0
    >>> parse('[[targets]]\\nid = "a"\\naddress = "300.1.1.1"\\n', source="x.toml", environ={})
    Traceback (most recent call last):
    ...
    migwatch.contract.config.ConfigError: x.toml: targets[0].address: must be an IPv4/IPv6 address ..., got '300.1.1.1'
"""

from __future__ import annotations

import os
import re
import socket
import ssl
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import msgspec

from migwatch.contract.codec import convert, explain
from migwatch.contract.detector_settings import DEFAULTS as DETECTOR_DEFAULTS
from migwatch.contract.detector_settings import DetectorSettings
from migwatch.contract.fields import FieldError, check_identifier
from migwatch.contract.records import Target
from migwatch.contract.silences import Silence

ENV_PREFIX = "MIGWATCH_"
_TOPIC_PREFIX = re.compile(r"[A-Za-z0-9._-]{0,200}\Z")
_BOOTSTRAP = re.compile(r"\[?[A-Za-z0-9.:-]+\]?:\d{1,5}\Z")


class ConfigError(ValueError):
    """A configuration that cannot be used; the message is one line naming the source, key and value."""


class _Section(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A config table: unknown keys are errors (a typo must not silently fall back to a default)."""


class KafkaSettings(_Section, kw_only=True, forbid_unknown_fields=True):
    """Where the broker is and how the topics of CONTRACT section 1 are named and laid out."""

    # A comma-separated host:port list, as Kafka's own tools take it (CONTRACT: MIGWATCH_KAFKA_BOOTSTRAP).
    bootstrap: str = "127.0.0.1:9092"
    topic_prefix: str = "migwatch."
    # ping and ntp must have the same count (co-partitioned), and Faust's changelogs follow it.
    partitions: int = 8
    # Copies of every topic migwatch creates (the contract's, Faust's changelogs and its assignor's): 0 picks
    # 3 on a cluster of 3 brokers or more (no acknowledged sample or alert rests on one broker), else as many
    # as there are brokers (1 on a development Kafka). More than the cluster's brokers is an error.
    replication_factor: int = 0
    # The copies a write must reach before Kafka acknowledges it (every client asks for all in-sync copies,
    # acks=all), set on the topics migwatch creates: 0 picks replication_factor - 1 from 3 copies on (one
    # broker may fail without stopping a write), else 1.
    min_insync_replicas: int = 0
    # Names this process in the broker's logs and quotas.
    client_id: str = "migwatch"
    # How long a client waits for the first broker to answer before it reports the brokers unreachable.
    connect_timeout_s: float = 30.0
    # Security (every client: the probes' kafka-python, Faust's aiokafka, the admin and tail tools).
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"] = "SCRAM-SHA-512"
    sasl_username: str = ""
    # The password itself (best from MIGWATCH_KAFKA_SASL_PASSWORD) or a file holding it (a mounted
    # Kubernetes Secret); never printed by `migwatch config`.
    sasl_password: str = ""
    sasl_password_file: str = ""
    ssl_cafile: str = ""  # PEM CA bundle the brokers' certificates are checked against; empty: the system's
    ssl_certfile: str = ""  # PEM client certificate, for brokers that require one (mutual TLS)
    ssl_keyfile: str = ""  # its private key (PEM); may be left empty when the certificate file holds it
    ssl_check_hostname: bool = True

    def __post_init__(self) -> None:
        servers = self.servers
        if not servers or not all(
            _BOOTSTRAP.match(server) and 0 < int(server.rpartition(":")[2]) < 65536 for server in servers
        ):
            raise FieldError(f"bootstrap: must be host:port[,host:port...], got {self.bootstrap!r}")
        if not _TOPIC_PREFIX.match(self.topic_prefix):
            raise FieldError(
                f"topic_prefix: must be up to 200 letters, digits, '.', '_' or '-', got {self.topic_prefix!r}"
            )
        if not 0 < self.connect_timeout_s <= 3600:
            raise FieldError(f"connect_timeout_s: must be > 0 and <= 3600, got {self.connect_timeout_s!r}")
        if not 1 <= self.partitions <= 10_000:
            raise FieldError(f"partitions: must be between 1 and 10000, got {self.partitions!r}")
        if not 0 <= self.replication_factor <= 32:
            raise FieldError(f"replication_factor: must be between 1 and 32 (0: by the brokers), got "
                             f"{self.replication_factor!r}")  # fmt: skip
        if not 0 <= self.min_insync_replicas <= (self.replication_factor or 32):
            raise FieldError(f"min_insync_replicas: must be between 1 and replication_factor "
                             f"({self.replication_factor or 'by the brokers'}) (0: picked), got "
                             f"{self.min_insync_replicas!r}")  # fmt: skip
        self._check_security()

    def replication_for(self, brokers: int) -> KafkaSettings:
        """These settings with the replication a cluster of ``brokers`` brokers gets (0s picked); FieldError
        when it cannot hold as many copies as asked."""
        factor = self.replication_factor or min(3, brokers)
        if factor > brokers:
            raise FieldError(f"kafka.replication_factor: {factor} copies, but the cluster has {brokers} broker(s)")
        insync = self.min_insync_replicas or max(1, factor - 1)  # 3 copies: 2; 2: 1; 1: 1
        if insync > factor:
            raise FieldError(f"kafka.min_insync_replicas: {insync} is more than kafka.replication_factor ({factor})")
        return msgspec.structs.replace(self, replication_factor=factor, min_insync_replicas=insync)

    def _check_security(self) -> None:
        for name in ("sasl_password_file", "ssl_cafile", "ssl_certfile", "ssl_keyfile"):
            path = getattr(self, name)
            if path and ("\0" in path or not os.access(path, os.R_OK)):
                raise FieldError(f"{name}: no readable file there, got {path!r}")
        if self.uses_sasl:
            if not self.sasl_username:
                raise FieldError(f"sasl_username: required with security_protocol ({self.security_protocol}), got ''")
            if bool(self.sasl_password) == bool(self.sasl_password_file):
                raise FieldError(
                    "sasl_password: give the password or sasl_password_file (one of them) with security_protocol "
                    f"({self.security_protocol})"
                )
        if self.ssl_keyfile and not self.ssl_certfile:
            raise FieldError(f"ssl_keyfile: needs ssl_certfile (the certificate of that key), got {self.ssl_keyfile!r}")

    @property
    def uses_tls(self) -> bool:
        return self.security_protocol in ("SSL", "SASL_SSL")

    @property
    def uses_sasl(self) -> bool:
        return self.security_protocol in ("SASL_PLAINTEXT", "SASL_SSL")

    def password(self) -> str:
        """The SASL password, read from ``sasl_password_file`` when that is set (trailing newline dropped)."""
        if self.sasl_password_file:
            return Path(self.sasl_password_file).read_text().rstrip("\r\n")
        return self.sasl_password

    def ssl_context(self) -> ssl.SSLContext | None:
        """The TLS context every client uses (None without TLS): CA, optional client certificate, host check."""
        if not self.uses_tls:
            return None
        context = ssl.create_default_context(cafile=self.ssl_cafile or None)
        if self.ssl_certfile:
            context.load_cert_chain(self.ssl_certfile, self.ssl_keyfile or None)
        context.check_hostname = self.ssl_check_hostname
        return context

    @property
    def servers(self) -> list[str]:
        return [server.strip() for server in self.bootstrap.split(",") if server.strip()]


def _state_home() -> Path:
    return Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state") / "migwatch"


class ProbeSettings(_Section, kw_only=True, forbid_unknown_fields=True):
    """One probe worker: its name in the samples, its site, and how long it waits for answers."""

    name: str = msgspec.field(default_factory=lambda: socket.gethostname() or "probe")
    site: str = "default"  # the worker probes the targets of this site
    ping_timeout_s: float = 1.0
    ntp_timeout_s: float = 1.0
    ntp_port: int = 123
    resolve_every_s: float = 60.0  # host names are looked up again this often
    # While Kafka is away samples wait in memory, then in a spill file; only past its limit are they dropped.
    buffer_samples: int = 200_000
    spill_dir: str = msgspec.field(default_factory=lambda: str(_state_home() / "spill"))
    spill_limit_mb: int = 1024
    # Samples go to Kafka in batches (CONTRACT section 1): per partition, what came within batch_linger_ms, or
    # batch_max_samples as soon as that many wait. 1: one sample per message, as before batches.
    batch_linger_ms: int = 100
    batch_max_samples: int = 1000
    # Targets from the config file, or shared by the site's workers through the compacted targets topic.
    targets_from: Literal["config", "topic"] = "config"
    session_timeout_s: float = 10.0  # a lost worker's targets move to the others after this
    metrics_bind: str = "127.0.0.1"  # Prometheus /metrics; set 0.0.0.0 to be scraped from elsewhere
    metrics_port: int = 9108  # 0: no endpoint

    def __post_init__(self) -> None:
        check_identifier("name", self.name)
        check_identifier("site", self.site)
        for name in ("ping_timeout_s", "ntp_timeout_s", "resolve_every_s", "session_timeout_s"):
            value = getattr(self, name)
            if not 0 < value <= 3600:
                raise FieldError(f"{name}: must be > 0 and <= 3600, got {value!r}")
        for name in ("buffer_samples", "spill_limit_mb"):
            if getattr(self, name) < 1:
                raise FieldError(f"{name}: must be >= 1, got {getattr(self, name)!r}")
        if not 0 <= self.metrics_port < 65536:
            raise FieldError(f"metrics_port: must be between 0 and 65535, got {self.metrics_port!r}")
        if not 0 <= self.batch_linger_ms <= 10_000:
            raise FieldError(f"batch_linger_ms: must be between 0 and 10000, got {self.batch_linger_ms!r}")
        if not 1 <= self.batch_max_samples <= 10_000:
            raise FieldError(f"batch_max_samples: must be between 1 and 10000, got {self.batch_max_samples!r}")
        if not 0 < self.ntp_port < 65536:
            raise FieldError(f"ntp_port: must be between 1 and 65535, got {self.ntp_port!r}")


class WorkerSettings(_Section, kw_only=True, forbid_unknown_fields=True):
    """One stream worker (``migwatch worker``): its consumer group, state store, batches and web server."""

    name: str = msgspec.field(default_factory=lambda: socket.gethostname() or "worker")  # alerts' observer.name
    # The Faust app id: the consumer group and the prefix of the changelog topics. Workers sharing it share
    # the partitions; changing it starts from empty state.
    app_id: str = "migwatch-worker"
    datadir: str = msgspec.field(default_factory=lambda: str(_state_home() / "worker"))
    store: Literal["rocksdb", "memory"] = "rocksdb"  # memory: state is rebuilt from the changelog at start
    # Messages are taken in batches of up to batch_size, or what came within batch_within_s: each target's
    # state is updated once per batch, which is what makes a stateful Faust agent fast. A message is one
    # sample or a batch of up to the probes' batch_max_samples (1,000), so a take of 100 holds up to 100,000
    # samples: bigger takes add memory and alert latency while a backlog is read, not speed. Live, a take
    # ends on batch_within_s (a probe sends ~10 batches a second a partition), so a sample waits up to that
    # for its batch: it bounds the alert latency (10-minute soaks at 10,000 samples/s, alert latency p99
    # 2.15 s at 0.5, 1.49 s at 0.2).
    batch_size: int = 100
    batch_within_s: float = 0.2
    # A target's state goes to its table (and the changelog) when its alert state changes, and otherwise at
    # most once per checkpoint_s of event time: a table write costs ~0.5 ms in Faust here. After a crash a
    # target resumes from its last checkpoint.
    checkpoint_s: float = 30.0
    chart_window_s: float = 30.0  # the per-VM chart's resolution (windows of RTT statistics)
    chart_history_s: float = 3600.0  # how long chart windows are kept
    web_bind: str = "127.0.0.1"  # /status, /metrics and the fleet page; 0.0.0.0 to serve other hosts
    web_port: int = 6066  # 0: no web server
    # Issue #22: where the other workers reach this one's pages (a target's chart is served by the worker that
    # watches it; any worker's fleet page fetches it from there). "" = http://<web_bind>:<web_port>.
    web_url: str = ""
    # A target's status (the fleet page's row) goes to the status topic when its state, alert or host changes,
    # its likelihood moves by 0.05, and otherwise once per status_every_s (the worker's clock).
    status_every_s: float = 30.0
    # A worker that stops heart-beating loses its partitions to the others after session_timeout_s; a
    # rebalance waits up to rebalance_timeout_s for every worker to rejoin.
    session_timeout_s: float = 10.0
    rebalance_timeout_s: float = 60.0
    # Copies of other workers' tables kept warm, so a takeover need not replay the whole changelog.
    standby_replicas: int = 0
    # Samples stamped further in the future (or older) than this against the worker's clock are dead
    # letters: one sample from 2099 would move a target's event time past every sample to come.
    max_sample_ahead_s: float = 300.0
    max_sample_age_s: float = 7 * 86_400.0

    def __post_init__(self) -> None:
        check_identifier("name", self.name)
        if not re.fullmatch(r"[A-Za-z0-9._-]{1,100}", self.app_id):
            raise FieldError(f"app_id: must be 1-100 letters, digits, '.', '_' or '-', got {self.app_id!r}")
        for name in (
            "batch_within_s",
            "checkpoint_s",
            "chart_window_s",
            "chart_history_s",
            "max_sample_ahead_s",
            "status_every_s",
        ):
            value = getattr(self, name)
            if not 0 < value <= 86_400:
                raise FieldError(f"{name}: must be > 0 and <= 86400, got {value!r}")
        if self.chart_history_s < self.chart_window_s:
            raise FieldError(
                f"chart_history_s: must be >= chart_window_s ({self.chart_window_s!r}), got {self.chart_history_s!r}"
            )
        if not 60 <= self.max_sample_age_s <= 10 * 365 * 86_400:
            raise FieldError(f"max_sample_age_s: must be between 60 s and 10 years, got {self.max_sample_age_s!r}")
        if not 1 <= self.batch_size <= 1_000_000:
            raise FieldError(f"batch_size: must be between 1 and 1000000, got {self.batch_size!r}")
        if not 1 <= self.rebalance_timeout_s <= 3600:
            raise FieldError(f"rebalance_timeout_s: must be >= 1 and <= 3600, got {self.rebalance_timeout_s!r}")
        if not 1 <= self.session_timeout_s <= self.rebalance_timeout_s:
            raise FieldError(
                f"session_timeout_s: must be >= 1 and <= rebalance_timeout_s ({self.rebalance_timeout_s!r}), "
                f"got {self.session_timeout_s!r}"
            )
        if not 0 <= self.web_port < 65536:
            raise FieldError(f"web_port: must be between 0 and 65535, got {self.web_port!r}")
        if self.web_url and not re.fullmatch(r"https?://[^\s/]+(/\S*)?", self.web_url):
            raise FieldError(f"web_url: must be http(s)://host[:port][/path], got {self.web_url!r}")
        if not 0 <= self.standby_replicas <= 10:
            raise FieldError(f"standby_replicas: must be between 0 and 10, got {self.standby_replicas!r}")

    @property
    def own_url(self) -> str:
        """Where the other workers reach this worker's pages (``web_url``, or the bound address)."""
        return self.web_url.rstrip("/") or f"http://{self.web_bind}:{self.web_port}"

    @property
    def chart_windows(self) -> int:
        """How many chart windows of a target are kept."""
        return int(self.chart_history_s // self.chart_window_s)


class LogSettings(_Section, kw_only=True, forbid_unknown_fields=True):
    """``[logging]``: the processes' own logs, as text or as ECS JSON for the SIEM (see migwatch.contract.logs)."""

    format: Literal["text", "ecs"] = "text"
    level: Literal["debug", "info", "warning", "error"] = "warning"


class AlertLinks(_Section, kw_only=True, forbid_unknown_fields=True):
    """``[alerts]``: links an alert carries for the analyst (ECS ``event.url``/``reference``, ``rule.reference``)."""

    public_url: str = ""  # the fleet page as analysts reach it: event.url and event.reference open the VM there
    runbook_url: str = ""  # what to do about a migration alert: rule.reference

    def __post_init__(self) -> None:
        for name in ("public_url", "runbook_url"):
            value = getattr(self, name)
            if value and not re.fullmatch(r"https?://[^\s/]+(/\S*)?", value):
                raise FieldError(f"{name}: must be an http:// or https:// URL, got {value!r}")


class ConfigTarget(Target, kw_only=True, forbid_unknown_fields=True):
    """A Target as written in the config file, where an unknown key is an error (on Kafka it is ignored)."""


class ConfigSilence(Silence, kw_only=True, forbid_unknown_fields=True):
    """A maintenance window as written in the config file (see migwatch.contract.silences)."""


class Config(_Section, kw_only=True, forbid_unknown_fields=True):
    kafka: KafkaSettings = msgspec.field(default_factory=KafkaSettings)
    probe: ProbeSettings = msgspec.field(default_factory=ProbeSettings)
    worker: WorkerSettings = msgspec.field(default_factory=WorkerSettings)
    detectors: DetectorSettings = DETECTOR_DEFAULTS
    alerts: AlertLinks = msgspec.field(default_factory=AlertLinks)
    logging: LogSettings = msgspec.field(default_factory=LogSettings)
    targets: list[ConfigTarget] = []
    silences: list[ConfigSilence] = []

    def __post_init__(self) -> None:
        for section, records in (("targets", self.targets), ("silences", self.silences)):
            seen: dict[str, int] = {}
            for i, record in enumerate(records):
                if record.id in seen:
                    raise FieldError(
                        f"{section}[{i}].id: duplicate {section[:-1]} id, also {section}[{seen[record.id]}], "
                        f"got {record.id!r}"
                    )
                seen[record.id] = i


def _sections() -> dict[str, type[msgspec.Struct]]:
    """The config tables that environment variables can override, by name."""
    return {
        field.name: field.type
        for field in msgspec.structs.fields(Config)
        if isinstance(field.type, type) and issubclass(field.type, msgspec.Struct)
    }


def _env_value(variable: str, raw: str, kind: Any) -> Any:
    """Convert one environment string to the setting's type; lists are comma-separated."""
    origin = getattr(kind, "__origin__", None)
    value: Any = [item.strip() for item in raw.split(",") if item.strip()] if origin is list else raw
    try:
        return msgspec.convert(value, kind, strict=False)
    except msgspec.ValidationError as error:
        raise ConfigError(f"{variable}: {explain(error, value).removeprefix('value: ')}") from None


def apply_environment(document: dict[str, Any], environ: Mapping[str, str]) -> dict[str, str]:
    """Write ``MIGWATCH_<SECTION>_<KEY>`` variables into the parsed TOML document.

    Variables whose section is not one of ours are left alone (other tools may share the prefix); a
    variable naming one of our sections with an unknown key is an error, since it is surely a typo.
    Returns the variable that set each ``section.key``, so that errors can name it.
    """
    sections = _sections()
    applied: dict[str, str] = {}
    for variable in sorted(environ):
        if not variable.startswith(ENV_PREFIX):
            continue
        name = variable[len(ENV_PREFIX) :].lower()
        section = next((s for s in sections if name.startswith(s + "_")), None)
        if section is None:
            continue
        key = name[len(section) + 1 :]
        fields = {field.name: field.type for field in msgspec.structs.fields(sections[section])}
        if key not in fields:
            raise ConfigError(f"{variable}: unknown setting {section}.{key} (known: {', '.join(sorted(fields))})")
        table = document.setdefault(section, {})
        if not isinstance(table, dict):
            raise ConfigError(f"{variable}: [{section}] in the file is not a table")
        table[key] = _env_value(variable, environ[variable], fields[key])
        applied[f"{section}.{key}"] = variable
    return applied


def parse(text: str, *, source: str, environ: Mapping[str, str] | None = None) -> Config:
    """Validate a TOML document and the environment into a Config, or raise ConfigError."""
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{source}: invalid TOML: {error}") from None
    from_environment = apply_environment(document, os.environ if environ is None else environ)
    try:
        return convert(Config, document)
    except FieldError as error:
        key = str(error).partition(":")[0]
        raise ConfigError(f"{from_environment.get(key, source)}: {error}") from None


def load(path: str | os.PathLike[str], environ: Mapping[str, str] | None = None) -> Config:
    """Read and validate the config file at ``path`` (plus the environment), or raise ConfigError."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        reason = error.strerror if isinstance(error, OSError) and error.strerror else str(error)
        raise ConfigError(f"{path}: cannot read: {reason}") from None
    return parse(text, source=str(path), environ=environ)
