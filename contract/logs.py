"""How every migwatch process logs (``[logging]``): text lines on stderr, or ECS JSON lines (``format =
"ecs"``, the ``ecs-logging`` formatter) that a log shipper sends to the SIEM beside the alerts, where a
worker's own troubles can be read next to what it raised.

    >>> config = logging_config(LogSettings(format="ecs", level="info"))
    >>> config["formatters"]["default"]["()"], config["root"]["level"]
    ('ecs_logging.StdlibFormatter', 'INFO')
"""

from __future__ import annotations

import logging.config
from typing import Any

from migwatch.contract.config import LogSettings

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def logging_config(settings: LogSettings) -> dict[str, Any]:
    """A ``logging.config.dictConfig`` for the settings: one stderr handler, text or ECS JSON."""
    formatter: dict[str, Any] = (
        {"()": "ecs_logging.StdlibFormatter"} if settings.format == "ecs" else {"format": TEXT_FORMAT}
    )
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"default": formatter},
        "handlers": {
            "default": {"class": "logging.StreamHandler", "formatter": "default", "stream": "ext://sys.stderr"}
        },
        "root": {"level": settings.level.upper(), "handlers": ["default"]},
    }


def configure(settings: LogSettings) -> None:
    """Set up the process's logging (a Faust worker gives the same dict to Faust instead)."""
    logging.config.dictConfig(logging_config(settings))
