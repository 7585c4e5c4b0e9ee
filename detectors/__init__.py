"""Detectors: pure, I/O-free code on event time. The ping heuristic (:mod:`.ping`), NTP time lag
(:mod:`.timelag`), reply TTL (:mod:`.ttl`), clock skew (:mod:`.skew`), their hybrid fusion (:mod:`.fusion`),
river learners (:mod:`.learners`), per target (:mod:`.target`) and per fleet (:mod:`.fleet`), and the
evaluation's scoring (:mod:`.evaluate`).

Installed as ``migwatch.detectors``.
"""
