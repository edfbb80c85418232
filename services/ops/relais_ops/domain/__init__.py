"""The ops service's model and rules. Pure: no I/O, no framework."""
