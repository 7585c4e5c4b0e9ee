"""The contract layer (``migwatch.contract``): what the other parts agree on, and nothing that does I/O.

The records of CONTRACT section 2 (:mod:`.records`) with the checks of their fields (:mod:`.fields`) and their
JSON (:mod:`.codec`), trace files (:mod:`.trace`) and label files (:mod:`.labels`) of section 3, the topic
names of section 1 (:mod:`.topics`), every setting (:mod:`.config` for the file and the environment,
:mod:`.detector_settings` for the detectors' thresholds), and the Alert's JSON Schema (:mod:`.alert_schema`).
It imports nothing else of migwatch; every other layer builds on it.
"""
