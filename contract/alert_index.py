"""The index template a search engine (OpenSearch, Elasticsearch) needs for migwatch alerts, generated from the
Alert record (its one owner), as ``deploy/siem/opensearch/index-template.json``:
``python -m migwatch.contract.alert_index > deploy/siem/opensearch/index-template.json``; a test fails when the
two differ, another checks the ECS types against ECS's own field list.

ECS fields get their ECS type (``ECS_TYPES``; ECS's ``match_only_text`` is Elasticsearch-only, ``text`` here);
ours under ``migwatch`` follow the record's JSON types: strings are ``keyword``, integers ``long``, numbers
``double`` (a UNIX time needs more digits than a ``float`` keeps), booleans ``boolean``. ``labels.*`` and any
string field a later version adds map as ``keyword``.

    >>> properties = index_template()["template"]["mappings"]["properties"]
    >>> properties["host"]["properties"]["ip"], properties["migwatch"]["properties"]["detected_ts"]
    ({'type': 'ip'}, {'type': 'double'})
"""

from __future__ import annotations

import json
from typing import Any

import msgspec

from migwatch.contract.records import Alert

INDEX_PATTERN = "migwatch-alerts*"
DEFAULT_INDEX = "migwatch-alerts"

# The ECS type of every ECS field an Alert may carry (ECS 8.17, generated/csv/fields.csv).
ECS_TYPES = {
    "@timestamp": "date", "message": "match_only_text", "labels": "object", "ecs.version": "keyword",
    "event.kind": "keyword", "event.category": "keyword", "event.type": "keyword", "event.action": "keyword",
    "event.id": "keyword", "event.severity": "long", "event.risk_score": "float", "event.risk_score_norm": "float",
    "event.start": "date", "event.created": "date", "event.url": "keyword", "event.reference": "keyword",
    "event.dataset": "keyword", "event.module": "keyword",
    "host.name": "keyword", "host.ip": "ip", "host.hostname": "keyword", "host.type": "keyword",
    "observer.name": "keyword", "observer.product": "keyword", "observer.version": "keyword",
    "observer.type": "keyword",
    "rule.id": "keyword", "rule.name": "keyword", "rule.description": "keyword", "rule.ruleset": "keyword",
    "rule.reference": "keyword",
    "related.hosts": "keyword", "related.ip": "ip",
}  # fmt: skip
_ENGINE_TYPE = {"match_only_text": "text"}
_JSON_TYPE = {"string": "keyword", "integer": "long", "number": "double", "boolean": "boolean"}


def index_template() -> dict[str, Any]:
    """The composable index template (``PUT _index_template/migwatch-alerts``)."""
    schema = msgspec.json.schema(Alert)
    definitions = schema["$defs"]
    properties = _properties(definitions["Alert"], definitions, "")
    properties["labels"] = {"type": "object", "dynamic": True}
    return {
        "index_patterns": [INDEX_PATTERN],
        "priority": 200,
        "_meta": {
            "description": "migwatch alerts (ECS field names, ours under migwatch); generated from the "
            "Alert record by migwatch.contract.alert_index"
        },
        "template": {
            "settings": {"index": {"number_of_shards": 1, "refresh_interval": "1s"}},
            "mappings": {
                "date_detection": False,
                # A field a later alert version adds is kept and searchable, never a rejected document.
                "dynamic_templates": [
                    {"strings_as_keywords": {"match_mapping_type": "string", "mapping": {"type": "keyword"}}}
                ],
                "properties": properties,
            },
        },
    }


def _properties(node: dict[str, Any], definitions: dict[str, Any], prefix: str) -> dict[str, Any]:
    mapped: dict[str, Any] = {}
    for name, spec in node["properties"].items():
        path = f"{prefix}{name}"
        if path == "labels":
            continue
        target = _resolve(spec, definitions)
        if target.get("type") == "object" and "properties" in target:
            mapped[name] = {"properties": _properties(target, definitions, f"{path}.")}
        elif path in ECS_TYPES:
            ecs = ECS_TYPES[path]
            mapped[name] = {"type": _ENGINE_TYPE.get(ecs, ecs)}
        elif path.startswith("migwatch."):
            mapped[name] = {"type": _JSON_TYPE[_json_type(target)]}
        else:
            raise ValueError(f"{path}: an Alert field that is neither ECS (add it to ECS_TYPES) nor under migwatch")
    return mapped


def _resolve(spec: dict[str, Any], definitions: dict[str, Any]) -> dict[str, Any]:
    """The schema of a property, through ``$ref`` and an ``anyOf`` with null (an optional value)."""
    if "$ref" in spec:
        return definitions[spec["$ref"].rsplit("/", 1)[1]]
    if "anyOf" in spec:
        options = [option for option in spec["anyOf"] if option.get("type") != "null"]
        return _resolve(options[0], definitions)
    return spec


def _json_type(spec: dict[str, Any]) -> str:
    if "enum" in spec:
        return "string"
    if spec.get("type") == "array":
        return _json_type(spec["items"])
    return str(spec["type"])


def index_template_text() -> str:
    """The template as the file in deploy/siem/opensearch holds it."""
    return json.dumps(index_template(), indent=2) + "\n"


if __name__ == "__main__":
    print(index_template_text(), end="")
