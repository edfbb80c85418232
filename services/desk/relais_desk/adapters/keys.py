"""The operator's private key (EC P-256 JWK) and the opening of the personal data of
inbox events, through the kit's `sealing` (JWE compact, ECDH-ES + A256GCM, the
plaintext bound to its referral). The key never leaves this process; a plaintext is
used for a check or a page, never stored nor logged."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from joserfc.jwk import ECKey

from relais_kit import sealing


class KeyProblem(Exception):
    """The configured key cannot be used (missing file, not a private EC P-256 key)."""


class Undecryptable(Exception):
    """Not a JWE this desk's key opens, or one sealed for another referral; the
    message names no value."""


class OperatorKey:
    def __init__(self, key: ECKey) -> None:
        self._key = key
        self.kid = str(key.kid or "")

    @classmethod
    def from_file(cls, path: Path, *, production: bool) -> OperatorKey:
        """In production, a key of the public demo set is refused wherever it was
        copied: it is recognised by its content (RFC 7638 thumbprint), not its path."""
        try:
            key = sealing.load_key(path, private=True)
        except sealing.SealingError as exc:
            raise KeyProblem(f"RELAIS_DESK_PRIVATE_KEY: {exc}") from exc
        if production and sealing.is_demo_key(key):
            raise KeyProblem(f"RELAIS_DESK_PRIVATE_KEY: {path} is one of the public demo keys "
                             "(deploy/demo/operator-keys), refused when RELAIS_ENV=production")
        return cls(key)

    def open(self, token: str, *, referral_id: str) -> dict[str, Any]:
        try:
            return sealing.unseal(token, self._key, referral_id=referral_id)
        except sealing.SealingError as exc:
            raise Undecryptable(str(exc)) from exc
