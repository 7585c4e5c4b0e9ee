"""The verbs this package adds to the ``migwatch`` command, through its ``migwatch.verbs`` entry points.

The product's CLI finds them when this package is installed and imports nothing of it otherwise.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from migwatch_dev import local_kafka
from migwatch_dev.lab import cli as lab_cli


def _add(
    verbs: Any,
    name: str,
    help_text: str,
    add_arguments: Callable[[argparse.ArgumentParser], None],
    run: Callable[[argparse.Namespace], int],
) -> None:
    parser: argparse.ArgumentParser = verbs.add_parser(name, help=help_text, description=help_text)
    add_arguments(parser)
    parser.set_defaults(handler=run)


def add_lab(verbs: Any) -> None:
    """``migwatch lab``: the migration lab."""
    _add(verbs, "lab", "run the migration lab: QEMU or emulated migrations, labelled traces",
         lab_cli.add_arguments, lab_cli.run)  # fmt: skip


def add_kafka(verbs: Any) -> None:
    """``migwatch kafka``: the local Apache Kafka."""
    _add(verbs, "kafka", "run a local Apache Kafka for development (start, stop, status, ...)",
         local_kafka.add_arguments, local_kafka.run)  # fmt: skip
