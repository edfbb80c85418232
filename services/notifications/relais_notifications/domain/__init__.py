"""What to tell whom when a referral is answered: pure functions, no I/O."""
