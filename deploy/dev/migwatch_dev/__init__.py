"""migwatch's developer tools, a package of their own beside the product (README, "Layout").

``lab`` (real QEMU and emulated live migrations, scripted scenarios, labelled traces), ``local_kafka`` (an
Apache Kafka from Maven Central for development and tests), ``synthetic`` (generated labelled traces) and
``demo`` (the quickstart). Installed, it adds the verbs ``migwatch lab`` and ``migwatch kafka``
(:mod:`.verbs`); the product wheel holds none of it and imports nothing of it.
"""
