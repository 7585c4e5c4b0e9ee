# The two commands of the README. Each does all set-up itself on a fresh machine.
.PHONY: demo test setup kafka-stop

demo:            ## install, start the local Kafka and run the demo
	deploy/demo

test:            ## install, start the local Kafka and run ruff + the whole test suite
	deploy/setup
	deploy/run-tests

setup:           ## install Debian and Python packages and fetch Kafka's jars
	deploy/setup

kafka-stop:      ## stop the local Kafka started by demo or test
	deploy/local/kafka stop
