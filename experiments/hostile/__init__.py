"""Test tooling: generators of hostile inputs (specs, YAML files, argument lists) and the runner
``python -m experiments.hostile_inputs`` that feeds them to the CLIs (see :mod:`.inputs`)."""
