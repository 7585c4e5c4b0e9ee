"""migwatch: detects live migration of virtual machines from outside the VM.

This folder is the top layer, the applications: the ``migwatch`` command (:mod:`.cli`), ``watch`` (probes
and detectors in one process), ``record`` (:mod:`.recorder`), ``replay``/``eval`` (:mod:`.replay`),
``plot``, the alerts tail and the targets registry. The layers below live in their own folders and
install as subpackages: ``migwatch.contract`` (``contract/``), ``migwatch.detectors`` (``detectors/``),
``migwatch.kafka_io`` (``kafka_io/``), ``migwatch.probes`` (``probes/``) and ``migwatch.streams``
(``streams/``). Every import points down (README, "Layout").
"""
