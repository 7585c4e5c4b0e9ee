"""Faust stream workers: join ping and NTP samples per VM, run the detectors, publish alerts.

Installed as ``migwatch.streams``, on the contract, the detectors and ``migwatch.kafka_io``: ``app`` declares the
Faust app (topics, tables, agents, web pages; :class:`~.app.WorkerApp`), ``partitions`` keeps each owned
partition's detectors and their checkpoints, ``tables`` is where they are durable, ``consumer`` mends Faust's
consumer, ``charts``/``views``/``page.html`` make the fleet page, ``metrics`` the Prometheus metrics, ``worker``
runs it all (``migwatch worker``).
"""
