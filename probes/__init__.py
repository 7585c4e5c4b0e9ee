"""Probe workers: ICMP and NTP probers, a drift-free scheduler, a Kafka publisher that loses nothing, the
site's targets shared through Kafka's consumer group, and Prometheus metrics.

Installed as ``migwatch.probes``, on the contract and ``migwatch.kafka_io``; the worker is
``migwatch probe`` (:mod:`.worker`). ``migwatch record`` drives the same scheduler into a trace file
(:mod:`migwatch.recorder`).
"""
