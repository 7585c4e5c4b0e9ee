# The two commands of the README. Each does all set-up itself on a fresh machine.
.PHONY: demo test setup kafka-stop lab-corpus

demo:            ## install, start the local Kafka and run the demo
	deploy/demo

test:            ## install, start the local Kafka and run ruff + the whole test suite
	deploy/setup
	deploy/run-tests

setup:           ## install Debian and Python packages and fetch Kafka's jars
	deploy/setup

kafka-stop:      ## stop the local Kafka started by demo or test
	deploy/local/kafka stop

lab-corpus:      ## record the lab's corpus (QEMU and emulated migrations, about an hour) and score it
	deploy/setup --runtime
	migwatch lab corpus --out deploy/dev/corpus
