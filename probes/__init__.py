"""Probe workers: ICMP and NTP probers behind one interface, a scheduler, and a Kafka publisher.

Installed as ``migwatch.probes``. Empty until issue #3 brings the probers.
"""
