"""Relais operator conformance kit: plays the platform for one operator code on
`operator.<code>.inbox` and checks what the operator's consumer writes back on
`operator.<code>.outbox`. Depends only on the published contract (`schemas/`)."""

__version__ = "0.1.0"
