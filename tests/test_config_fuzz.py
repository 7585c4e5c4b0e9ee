"""Issue #8, config fuzz: whatever a config file or a MIGWATCH_* variable holds, the result is a Config or a
one-line ConfigError naming the file (or variable) and the field; never another exception."""

from __future__ import annotations

import json
import math
from typing import Any

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from migwatch.contract.config import Config, ConfigError, ConfigSilence, ConfigTarget, parse

LISTS = ("targets", "silences")  # arrays of tables, fuzzed record by record below
SECTIONS = {field.name: field.type for field in msgspec.structs.fields(Config) if field.name not in LISTS}
FIELDS = [(section, field.name) for section, kind in SECTIONS.items() for field in msgspec.structs.fields(kind)]
TARGET_FIELDS = [field.name for field in msgspec.structs.fields(ConfigTarget)]
SILENCE_FIELDS = [field.name for field in msgspec.structs.fields(ConfigSilence)]


def toml_string(text: str) -> str:
    """A TOML basic string: quotes, backslashes and control characters (DEL too) as \\uXXXX escapes."""
    return '"' + "".join(f"\\u{ord(c):04x}" if ord(c) < 0x20 or ord(c) == 0x7F or c in '"\\' else c for c in text) + '"'


def toml_value(value: Any) -> str:
    """A TOML literal of ``value`` (nan and inf are TOML floats)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, str):
        return toml_string(value)
    if isinstance(value, int | float):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(item) for item in value) + "]"
    return "{" + ", ".join(f"{toml_string(k)} = {toml_value(v)}" for k, v in value.items()) + "}"


scalars = (
    st.text(max_size=20) | st.integers(min_value=-(2**63), max_value=2**63 - 1) | st.floats() | st.booleans()
)  # fmt: skip
values = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=6,
)  # fmt: skip


def check(text: str, environ: dict[str, str], names: tuple[str, ...], field: str = "") -> None:
    """Accepted, or one line starting with one of ``names``; or, for a rule between two settings (the
    session within the rebalance timeout, say), a line about the other one that names ``field``."""
    try:
        parse(text, source="c.toml", environ=environ)
    except ConfigError as error:
        message = str(error)
        assert "\n" not in message, message
        assert message.startswith(names) or (field and f"{field} (" in message), (message, names)


@settings(max_examples=1500, deadline=None)
@given(st.sampled_from(FIELDS), values)
def test_any_value_of_a_setting_is_accepted_or_refused_naming_it(field: tuple[str, str], value: Any) -> None:
    section, key = field
    check(f"[{section}]\n{key} = {toml_value(value)}\n", {}, (f"c.toml: {section}.{key}",), key)


@settings(max_examples=1000, deadline=None)
@given(st.sampled_from(TARGET_FIELDS), values)
def test_any_value_of_a_target_field_is_accepted_or_refused_naming_it(key: str, value: Any) -> None:
    base = {"id": '"web-01"', "address": '"192.0.2.10"'} | {key: toml_value(value)}
    text = "[[targets]]\n" + "".join(f"{name} = {literal}\n" for name, literal in base.items())
    check(text, {}, (f"c.toml: targets[0].{key}",))


@settings(max_examples=500, deadline=None)
@given(st.sampled_from(SILENCE_FIELDS), values)
def test_any_value_of_a_silence_field_is_accepted_or_refused_naming_it(key: str, value: Any) -> None:
    base = {"id": '"w"', "start": "1000.0", "end": "2000.0", "sites": '["fra-1"]'} | {key: toml_value(value)}
    text = "[[silences]]\n" + "".join(f"{name} = {literal}\n" for name, literal in base.items())
    # A rule between fields names the field it sits on (end after start; some selector set).
    check(text, {}, (f"c.toml: silences[0].{key}", "c.toml: silences[0].end", "c.toml: silences[0].targets"))


@settings(max_examples=1000, deadline=None)
@given(st.sampled_from(FIELDS), st.text(max_size=30))
def test_any_environment_value_is_accepted_or_refused_naming_the_variable(field: tuple[str, str], raw: str) -> None:
    variable = f"MIGWATCH_{field[0].upper()}_{field[1].upper()}"
    check("", {variable: raw}, (f"{variable}: ",), field[1])


@settings(max_examples=1000, deadline=None)
@given(st.text(max_size=200) | st.binary(max_size=200).map(lambda b: b.decode("latin-1")))
def test_any_text_is_a_config_or_an_error_naming_the_file(text: str) -> None:
    check(text, {}, ("c.toml: ",))
