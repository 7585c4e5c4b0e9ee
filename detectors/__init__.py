"""Detectors: pure, I/O-free code on event time, on the contract layer only.

The ping heuristic (:mod:`.ping`), NTP time lag (:mod:`.timelag`), reply TTL (:mod:`.ttl`), clock skew
(:mod:`.skew`), their hybrid fusion (:mod:`.fusion`), river learners (:mod:`.learners`), all of them per target
(:mod:`.target`) and per group of targets (:mod:`.target_group`), and the evaluation's scoring
(:mod:`.evaluate`). Their thresholds are ``migwatch.contract.detector_settings``.

Installed as ``migwatch.detectors``.
"""
