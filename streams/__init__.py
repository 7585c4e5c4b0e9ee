"""Faust stream workers: join ping and NTP samples per VM, run the detectors, publish alerts.

Installed as ``migwatch.streams``. Empty until issue #5 brings the Faust app.
"""
