"""SCRAM (RFC 5802, RFC 7677), the server's side, as Kafka uses it for SASL
SCRAM-SHA-256 and SCRAM-SHA-512: the stored credentials (salt, iterations, StoredKey,
ServerKey — never the password) and one exchange, free of I/O.

    exchange = ScramExchange(credentials.lookup)
    server_first = exchange.first(client_first)      # "r=…,s=…,i=…"
    outcome = exchange.final(client_final)           # Outcome(ok, message, principal)
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Callable
from dataclasses import dataclass

HASHES = {"SCRAM-SHA-256": "sha256", "SCRAM-SHA-512": "sha512"}
# Kafka's minimum for SCRAM credentials is 4096 iterations.
ITERATIONS = 4096


class ScramError(ValueError):
    """A malformed SCRAM message (the exchange fails; the text says what was wrong)."""


@dataclass(frozen=True)
class Credential:
    mechanism: str
    salt: bytes
    iterations: int
    stored_key: bytes
    server_key: bytes

    def to_json(self) -> dict[str, object]:
        b64 = base64.b64encode
        return {"salt": b64(self.salt).decode(), "iterations": self.iterations,
                "stored_key": b64(self.stored_key).decode(), "server_key": b64(self.server_key).decode()}

    @classmethod
    def from_json(cls, mechanism: str, data: dict[str, object]) -> Credential:
        def raw(name: str) -> bytes:
            return base64.b64decode(str(data[name]))
        return cls(mechanism, raw("salt"), int(str(data["iterations"])), raw("stored_key"), raw("server_key"))


def _hash(mechanism: str) -> str:
    try:
        return HASHES[mechanism]
    except KeyError:
        raise ScramError(f"unsupported mechanism {mechanism!r}") from None


def _hmac(name: str, key: bytes, message: bytes) -> bytes:
    return hmac.new(key, message, name).digest()


def credential(mechanism: str, password: str, *, salt: bytes | None = None,
               iterations: int = ITERATIONS) -> Credential:
    """What the server keeps for a password (RFC 5802 §3)."""
    name = _hash(mechanism)
    salt = salt or secrets.token_bytes(32)
    salted = hashlib.pbkdf2_hmac(name, password.encode("utf-8"), salt, iterations)
    client_key = _hmac(name, salted, b"Client Key")
    return Credential(mechanism, salt, iterations, hashlib.new(name, client_key).digest(),
                      _hmac(name, salted, b"Server Key"))


def _attributes(message: str) -> dict[str, str]:
    found: dict[str, str] = {}
    for part in message.split(","):
        if len(part) < 2 or part[1] != "=":
            raise ScramError(f"malformed attribute {part[:20]!r}")
        found.setdefault(part[0], part[2:])
    return found


def _unescape(name: str) -> str:
    if "=" in name.replace("=2C", "").replace("=3D", ""):
        raise ScramError("malformed user name")
    return name.replace("=2C", ",").replace("=3D", "=")


@dataclass(frozen=True)
class Outcome:
    ok: bool
    message: str       # the server-final message ("v=…" or "e=…")
    principal: str


class ScramExchange:
    """One client's authentication. `lookup(user, mechanism)` gives the stored
    credential or None; an unknown user gets a made-up salt, so that the answer does
    not tell who exists, and fails at the proof like a wrong password."""

    def __init__(self, mechanism: str, lookup: Callable[[str, str], Credential | None],
                 server_nonce: Callable[[], str] = lambda: base64.b64encode(secrets.token_bytes(18)).decode()) -> None:
        self.mechanism = mechanism
        self._server_nonce = server_nonce
        self._name = _hash(mechanism)
        self._lookup = lookup
        self._user = ""
        self._credential: Credential | None = None
        self._client_first_bare = ""
        self._server_first = ""
        self._nonce = ""

    @property
    def started(self) -> bool:
        return bool(self._client_first_bare)

    def first(self, client_first: str) -> str:
        if not client_first.startswith(("n,", "y,")):
            raise ScramError("channel binding is not supported (gs2 header must be 'n' or 'y')")
        try:
            _gs2, _authzid, bare = client_first.split(",", 2)
        except ValueError:
            raise ScramError("malformed client-first message") from None
        attributes = _attributes(bare)
        if "m" in attributes or "n" not in attributes or "r" not in attributes:
            raise ScramError("client-first message needs n= and r=")
        self._user = _unescape(attributes["n"])
        self._client_first_bare = bare
        self._credential = self._lookup(self._user, self.mechanism)
        salt = self._credential.salt if self._credential else hashlib.sha256(
            b"relais-unknown-user:" + self._user.encode()).digest()
        iterations = self._credential.iterations if self._credential else ITERATIONS
        self._nonce = attributes["r"] + self._server_nonce()
        self._server_first = f"r={self._nonce},s={base64.b64encode(salt).decode()},i={iterations}"
        return self._server_first

    def final(self, client_final: str) -> Outcome:
        attributes = _attributes(client_final)
        if attributes.get("r") != self._nonce:
            return Outcome(False, "e=other-error", self._user)
        if "p" not in attributes or "c" not in attributes:
            raise ScramError("client-final message needs c= and p=")
        without_proof = client_final[:client_final.rindex(",p=")]
        auth_message = f"{self._client_first_bare},{self._server_first},{without_proof}".encode()
        stored = self._credential
        if stored is None:
            return Outcome(False, "e=invalid-proof", self._user)
        try:
            proof = base64.b64decode(attributes["p"], validate=True)
        except ValueError:
            raise ScramError("the proof is not base64") from None
        signature = _hmac(self._name, stored.stored_key, auth_message)
        if len(proof) != len(signature):
            return Outcome(False, "e=invalid-proof", self._user)
        client_key = bytes(a ^ b for a, b in zip(proof, signature, strict=True))
        if not hmac.compare_digest(hashlib.new(self._name, client_key).digest(), stored.stored_key):
            return Outcome(False, "e=invalid-proof", self._user)
        server_signature = _hmac(self._name, stored.server_key, auth_message)
        return Outcome(True, "v=" + base64.b64encode(server_signature).decode(), self._user)
