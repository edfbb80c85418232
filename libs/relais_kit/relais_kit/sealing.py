"""Personal data sealed for one operator (contract v1, "Personal data is encrypted").

A JWE (RFC 7516) in compact serialization, `alg` ECDH-ES, `enc` A256GCM, for the
operator's registered EC P-256 public key; the protected header names the key (`kid`)
and says the plaintext is JSON (`cty`). Every language has a JOSE library that opens
it (Python `joserfc`/`jwcrypto`, Node.js `jose`, Java Nimbus, .NET `jose-jwt`).

The plaintext carries the referral id: a ciphertext copied onto another referral's
event is refused when opened."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from functools import cache
from pathlib import Path
from typing import Any

from joserfc import jwe
from joserfc.errors import JoseError
from joserfc.jwk import ECKey

# The demo key pairs: public, in the repository; production refuses any key among them,
# wherever it was copied (compared by RFC 7638 thumbprint, not by path).
DEMO_KEYS = Path(__file__).resolve().parents[3] / "deploy" / "demo" / "operator-keys"
ALG = "ECDH-ES"
ENC = "A256GCM"
CONTENT_TYPE = "application/json"


class SealingError(Exception):
    """A key that cannot be used, or a sealed value that cannot be opened. The
    message never quotes the plaintext."""


def load_key(path: Path, *, private: bool) -> ECKey:
    """An EC P-256 JWK from a JSON file, with a `kid`; `private` says which half."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise SealingError(f"{path}: not a readable JSON Web Key ({exc.__class__.__name__})") from exc
    if not isinstance(raw, dict) or raw.get("kty") != "EC" or raw.get("crv") != "P-256":
        raise SealingError(f"{path}: an EC P-256 key (kty EC, crv P-256) is needed")
    if not raw.get("kid"):
        raise SealingError(f"{path}: the key has no kid")
    if private != ("d" in raw):
        raise SealingError(f"{path}: expected a {'private' if private else 'public'} key")
    return ECKey.import_key(raw)


@cache
def demo_thumbprints(folder: Path = DEMO_KEYS) -> frozenset[str]:
    found = set()
    for path in sorted(folder.glob("*.jwk.json")):
        try:
            found.add(str(ECKey.import_key(json.loads(path.read_text(encoding="utf-8"))).thumbprint()))
        except (OSError, ValueError, JoseError):
            continue
    return frozenset(found)


def is_demo_key(key: ECKey) -> bool:
    """A key of the public demo set (either half: both share a thumbprint)."""
    return str(key.thumbprint()) in demo_thumbprints()


def public_key_path(folder: Path, operator: str) -> Path:
    return folder / f"{operator}.public.jwk.json"


def private_key_path(folder: Path, operator: str) -> Path:
    return folder / f"{operator}.private.jwk.json"


class OperatorKeys:
    """The operators' registered public keys: what the platform seals with."""

    def __init__(self, keys: Mapping[str, ECKey]) -> None:
        self._keys = dict(keys)

    @classmethod
    def from_folder(cls, folder: Path, operators: Iterable[str]) -> OperatorKeys:
        """`<folder>/<code>.public.jwk.json` for every operator; a missing or unusable
        key is an error naming every operator concerned (an operator without a key
        could not be sent any referral)."""
        keys: dict[str, ECKey] = {}
        problems: list[str] = []
        for operator in operators:
            path = public_key_path(folder, operator)
            if not path.exists():
                problems.append(f"{operator}: no public key at {path}")
                continue
            try:
                keys[operator] = load_key(path, private=False)
            except SealingError as exc:
                problems.append(f"{operator}: {exc}")
        if problems:
            raise SealingError("operator keys: " + "; ".join(problems))
        return cls(keys)

    def demo_operators(self) -> list[str]:
        """The operators whose registered key is one of the public demo keys."""
        return sorted(code for code, key in self._keys.items() if is_demo_key(key))

    def kid(self, operator: str) -> str:
        return str(self._keys[operator].kid)

    def seal(self, operator: str, plaintext: Mapping[str, Any]) -> str:
        key = self._keys.get(operator)
        if key is None:
            raise SealingError(f"no public key registered for operator {operator}")
        return seal(key, plaintext)


def seal(public_key: ECKey, plaintext: Mapping[str, Any]) -> str:
    header = {"alg": ALG, "enc": ENC, "kid": public_key.kid, "cty": CONTENT_TYPE}
    body = json.dumps(plaintext, ensure_ascii=False, separators=(",", ":")).encode()
    return jwe.encrypt_compact(header, body, public_key)


def unseal(token: str, private_key: ECKey, *, referral_id: str | None = None,
           request_id: str | None = None) -> dict[str, Any]:
    """Opens a sealed value with the private key and checks it belongs to
    `referral_id` (an inbox event's) or `request_id` (a personal data access answer's)."""
    field, expected = ("referral_id", referral_id) if referral_id is not None else ("request_id", request_id)
    if expected is None:
        raise SealingError("a sealed value is opened for a referral or a request")
    try:
        opened = jwe.decrypt_compact(token, private_key, algorithms=[ALG, ENC])
    except (JoseError, ValueError) as exc:
        raise SealingError(f"personal_data cannot be decrypted with key {private_key.kid} "
                           f"({exc.__class__.__name__})") from exc
    if opened.protected.get("alg") != ALG or opened.protected.get("enc") != ENC:
        raise SealingError(f"personal_data must use alg {ALG} and enc {ENC}")
    try:
        plaintext = json.loads(opened.plaintext or b"")
    except ValueError as exc:
        raise SealingError("personal_data plaintext is not JSON") from exc
    if not isinstance(plaintext, dict):
        raise SealingError("personal_data plaintext is not a JSON object")
    if plaintext.get(field) != expected:
        raise SealingError(f"personal_data belongs to another {field.removesuffix('_id')}")
    return plaintext
