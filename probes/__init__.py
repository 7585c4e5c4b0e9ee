"""Probe workers: ICMP and NTP probers, a drift-free scheduler, a Kafka publisher that loses nothing, the
site's targets shared through Kafka's consumer group, and Prometheus metrics.

Installed as ``migwatch.probes``; the worker is ``migwatch probe`` (:mod:`.worker`), the recorder
``migwatch record`` (:mod:`.record`).
"""
