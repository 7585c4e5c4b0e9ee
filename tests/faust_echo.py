"""A minimal Faust app for the client-compatibility test: it counts messages per key in a table (so Faust
creates a changelog topic on the broker) and forwards each value with its count to a sink topic.
Run as ``python tests/faust_echo.py worker``; settings come from ECHO_* environment variables."""

from __future__ import annotations

import os

import faust

app = faust.App(
    os.environ["ECHO_APP_ID"],
    broker=f"kafka://{os.environ['ECHO_BOOTSTRAP']}",
    store="memory://",
    datadir=os.environ["ECHO_DATADIR"],
    web_enabled=False,
    broker_session_timeout=10,
    topic_partitions=int(os.environ["ECHO_PARTITIONS"]),
)
source = app.topic(os.environ["ECHO_SOURCE"], key_serializer="raw", value_serializer="raw")
sink = app.topic(os.environ["ECHO_SINK"], key_serializer="raw", value_serializer="raw")
counts = app.Table("counts", default=int)


@app.agent(source)
async def echo(stream: faust.StreamT) -> None:
    async for key, value in stream.items():
        counts[key] += 1
        await sink.send(key=key, value=value + b":" + str(counts[key]).encode())


if __name__ == "__main__":
    app.main()
