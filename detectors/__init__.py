"""Detectors: pure, I/O-free code on event time (the ping heuristic, time-lag detection, fusion, learners).

Installed as ``migwatch.detectors``. Empty until issue #4 brings the detectors.
"""
