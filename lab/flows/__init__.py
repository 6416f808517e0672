"""Flows: sequences of named steps driven over the serial console and QMP."""
