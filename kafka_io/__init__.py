"""Kafka clients made from the contract's settings (``migwatch.kafka_io``): kafka-python producers,
consumers and admin clients with clear connection errors (:mod:`.clients`), and the contract's topics
created and checked on a broker (:mod:`.topic_admin`). Probes, stream workers and the CLI use it."""
