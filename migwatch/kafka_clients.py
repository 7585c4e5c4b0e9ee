"""kafka-python clients built from the config, in one place, so every part connects the same way."""

from __future__ import annotations

from typing import Any

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer

from migwatch.config import KafkaSettings


def _common(settings: KafkaSettings) -> dict[str, Any]:
    return {
        "bootstrap_servers": settings.servers,
        "client_id": settings.client_id,
        "bootstrap_timeout_ms": int(settings.connect_timeout_s * 1000),
    }


def producer(settings: KafkaSettings, **overrides: Any) -> KafkaProducer:
    """A producer that loses nothing it acknowledged: all in-sync replicas, idempotent retries."""
    options: dict[str, Any] = {"acks": "all", "enable_idempotence": True, "linger_ms": 5, **overrides}
    return KafkaProducer(**{**_common(settings), **options})


def consumer(settings: KafkaSettings, *topics: str, **overrides: Any) -> KafkaConsumer:
    return KafkaConsumer(*topics, **{**_common(settings), **overrides})


def admin(settings: KafkaSettings) -> KafkaAdminClient:
    return KafkaAdminClient(**_common(settings))
