"""migwatch: detects live migration of virtual machines from outside the VM.

The shared core: contract records (`records`), trace and label files (`trace`), configuration (`config`),
Kafka topics (`topics`), the local development broker (`local_kafka`) and the command line (`cli`). The
probes, stream workers and detectors live in their own folders and install as `migwatch.probes`,
`migwatch.streams` and `migwatch.detectors`.
"""
