"""What talks to the outside: the broker."""
