"""Relais ops service: watches the platform from outside. For now the consumer lag of
every consumer group (Burrow-style status per group) and the end of every topic, as
Prometheus metrics and a JSON API for the ops role; later the ops console."""
