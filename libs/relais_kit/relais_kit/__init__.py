"""What the Relais services share: the event envelope, the contract, the outbox relay,
the idempotent consumer, logging and database plumbing. No domain logic lives here."""
