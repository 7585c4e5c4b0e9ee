"""Faust stream workers: join ping and NTP samples per VM, run the detectors, publish alerts.

Installed as ``migwatch.streams``: ``app`` declares the Faust app (topics, tables, agents, web pages),
``shards`` keeps each partition's detector state and its checkpoints, ``charts``/``views``/``page.html``
make the fleet page, ``metrics`` the Prometheus metrics, ``worker`` runs it all (``migwatch worker``).
"""
