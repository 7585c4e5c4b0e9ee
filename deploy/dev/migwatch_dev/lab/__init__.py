"""The migration lab: real QEMU live migrations and emulated ones on test hosts in network namespaces,
played as scripted scenarios whose ground truth is written as a labels file (CONTRACT section 3)."""
