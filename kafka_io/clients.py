"""kafka-python clients built from the config, in one place, so every part connects the same way.

When no broker can be reached, kafka-python says only "Unable to bootstrap"; the reason (a refused
password, a certificate the broker rejects) is in its log. Building a client here keeps the last reason it
logged and raises :class:`BrokersUnreachableError` naming it, so that a wrong password reads as one.
"""

from __future__ import annotations

import functools
import logging
import re
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.errors import KafkaError, KafkaTimeoutError

from migwatch.contract.config import KafkaSettings

Client = TypeVar("Client")


class BrokersUnreachableError(KafkaError):
    """No broker of the bootstrap list could be connected to; the message says why when it is known."""


class _Reasons(logging.Handler):
    """The connection failures kafka-python logs while a client bootstraps."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.reasons: deque[str] = deque(maxlen=21)  # the latest failures of one bootstrap
        self.authenticating = False

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        # A connection's own failure, not the summary ("Bootstrap failed: ... Unable to bootstrap") after it.
        if ("failed" in message or "Connection lost" in message) and not message.startswith("Bootstrap failed"):
            # The cause alone: "Bootstrap connection to bootstrap-0 failed: X (backoff 1.80 secs)" -> "X".
            reason = re.sub(
                r" \(backoff [0-9.]+ secs\)$", "", re.sub(r"^Bootstrap connection to \S+ failed: ", "", message)
            )
            self.reasons.append(reason)

    def watch_requests(self, record: logging.LogRecord, passing: int) -> bool:
        """A filter on kafka-python's connection logger, lowered to DEBUG while the client bootstraps.

        Over TLS the broker usually hangs up on a refused SCRAM proof without its error reply reaching
        the client (seen 7 times in 8 here), which kafka-python logs as a plain disconnect; the request
        the connection was waiting on tells the two apart. Passes on only what the logger's own level
        (``passing``) would have let through."""
        message = record.getMessage()
        if "SaslAuthenticateRequest(" in message:
            self.authenticating = True
        elif "SaslAuthenticateResponse(" in message:
            self.authenticating = False
        elif "Connection lost" in message and self.authenticating:
            self.authenticating = False
            self.reasons.append("the broker closed the connection during SASL authentication")
        return record.levelno >= passing


def _explain(settings: KafkaSettings, reasons: Sequence[str]) -> str:
    """The most telling reason: after a refused password or certificate the broker just hangs up, and
    "socket disconnected" follows; the refusal is what the user must fix."""
    where = f"cannot connect to {settings.bootstrap} ({settings.security_protocol}"
    where += f", user {settings.sasl_username!r})" if settings.uses_sasl else ")"
    if any("SaslAuthenticationFailed" in reason or "during SASL authentication" in reason for reason in reasons):
        return f"{where}: authentication failed ({settings.sasl_mechanism}): wrong user name or password"
    tls = [reason for reason in reasons if "CERTIFICATE" in reason.upper() or "SSL" in reason]
    if tls:
        return f"{where}: the TLS handshake failed (check ssl_cafile, ssl_certfile, ssl_keyfile): {tls[-1]}"
    return f"{where}: {reasons[-1] if reasons else 'no broker answered within connect_timeout_s'}"


@contextmanager
def _connecting(settings: KafkaSettings) -> Iterator[None]:
    handler = _Reasons()
    logger = logging.getLogger("kafka")
    connection_log = logging.getLogger("kafka.net.connection")
    level, passing = connection_log.level, connection_log.getEffectiveLevel()
    watch = functools.partial(handler.watch_requests, passing=passing)
    logger.addHandler(handler)
    if settings.uses_sasl:
        connection_log.setLevel(logging.DEBUG)
        connection_log.addFilter(watch)
    try:
        yield
    except KafkaTimeoutError as error:
        raise BrokersUnreachableError(_explain(settings, handler.reasons)) from error
    finally:
        logger.removeHandler(handler)
        connection_log.removeFilter(watch)
        connection_log.setLevel(level)


def _build(settings: KafkaSettings, make: Callable[..., Client], *args: Any, **options: Any) -> Client:
    with _connecting(settings):
        return make(*args, **{**_common(settings), **options})


def _common(settings: KafkaSettings) -> dict[str, Any]:
    options: dict[str, Any] = {
        "bootstrap_servers": settings.servers,
        "client_id": settings.client_id,
        "bootstrap_timeout_ms": int(settings.connect_timeout_s * 1000),
        "security_protocol": settings.security_protocol,
    }
    if settings.uses_tls:
        options["ssl_context"] = settings.ssl_context()
    if settings.uses_sasl:
        options |= {
            "sasl_mechanism": settings.sasl_mechanism,
            "sasl_plain_username": settings.sasl_username,
            "sasl_plain_password": settings.password(),
        }
    return options


def producer(settings: KafkaSettings, **overrides: Any) -> KafkaProducer:
    """A producer that loses nothing it acknowledged: all in-sync replicas, idempotent retries."""
    return _build(settings, KafkaProducer, **{"acks": "all", "enable_idempotence": True, "linger_ms": 5, **overrides})


def consumer(settings: KafkaSettings, *topics: str, **overrides: Any) -> KafkaConsumer:
    return _build(settings, KafkaConsumer, *topics, **overrides)


def admin(settings: KafkaSettings) -> KafkaAdminClient:
    return _build(settings, KafkaAdminClient)
