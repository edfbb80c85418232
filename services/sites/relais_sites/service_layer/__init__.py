"""Use cases: each one a PostgreSQL transaction that changes sites and records the
events announcing the change in the outbox."""
