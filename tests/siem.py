"""The SIEM's view of an alert: the JSON Schema in deploy/siem/, as a validator."""

from __future__ import annotations

import json
from pathlib import Path

from jsonschema import Draft202012Validator

SCHEMA = Path(__file__).resolve().parents[1] / "deploy" / "siem" / "alert.schema.json"


def alert_schema_validator() -> Draft202012Validator:
    schema = json.loads(SCHEMA.read_text())
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)
