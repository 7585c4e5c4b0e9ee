"""The JSON Schema of an Alert for SIEMs, generated from the Alert record (its one owner).

``deploy/siem/alert.schema.json`` is this module's output, written with
``python -m migwatch.contract.alert_schema > deploy/siem/alert.schema.json``; a test fails when the two differ.
Objects are open (no ``additionalProperties: false``): readers ignore fields they do not know (CONTRACT).

    >>> schema = alert_schema()
    >>> schema["$ref"], schema["$defs"]["AlertEvent"]["properties"]["severity"]
    ('#/$defs/Alert', {'minimum': 1, 'maximum': 4, 'type': 'integer'})
"""

from __future__ import annotations

import json
from typing import Any

import msgspec

from migwatch.contract.records import Alert

SCHEMA_ID = "https://github.com/migwatch/migwatch/deploy/siem/alert.schema.json"


def alert_schema() -> dict[str, Any]:
    """The Alert record's JSON Schema (draft 2020-12), with the title and description a SIEM team reads."""
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "title": "migwatch Alert",
        "description": "A migwatch alert on the migwatch.alerts topic (CONTRACT section 2): Elastic Common Schema "
        "field names, migwatch's own under 'migwatch'. Readers ignore fields they do not know, so objects are "
        "open. Generated from the Alert record (migwatch.contract.records).",
        **msgspec.json.schema(Alert),
    }


def alert_schema_text() -> str:
    """The schema as the file in deploy/siem holds it."""
    return json.dumps(alert_schema(), indent=2) + "\n"


if __name__ == "__main__":
    print(alert_schema_text(), end="")
