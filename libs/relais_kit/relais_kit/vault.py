"""Personal data encrypted at rest: what a service stores of a citizen (identity,
contact, summaries, messages, letters, outbox payloads) is sealed with AES-256-GCM
under a data key kept OUTSIDE the database. A dump of a service's schema shows
ciphertext; whoever also has the key file can read it, nobody else.

A sealed value is text: `rv1:<key id>:<base64url(nonce ‖ ciphertext ‖ tag)>`. The
associated data binds it to where it belongs (`<table>.<column>:<row id>`): a value
copied onto another row or column does not open.

Keys come through a port (`KeyRing`): `FileKeyRing` reads a JSON file that ops
provide (mounted secret, KMS-decrypted file…) and re-reads it when it changes, so a new
key is taken up without a restart:

    {"current": "k-2026-12", "keys": {"k-2026-11": "<base64 32 bytes>", "k-2026-12": "…"},
     "index_key": "<base64 32 bytes>"}

Rotation without downtime: add a key and make it current (`python -m relais_kit.vault
rotate --keys FILE`); new values are sealed with it at once, and each service's
re-sealing loop rewrites the older values under it in small batches; once `status`
shows no value under the old key, remove it from the file (`retire`). The
`index_key` keys the blind indexes (HMAC) that let a citizen's records be found by
identity without storing the identity in clear."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
import unicodedata
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from relais_kit import keyfiles

PREFIX = "rv1"
NONCE_BYTES = 12
KEY_BYTES = 32


class VaultError(Exception):
    """A key file that cannot be used, or a sealed value that does not open. Messages
    never quote a plaintext."""


class KeyRing(Protocol):
    """Where the data keys come from (a file, a KMS…)."""

    def current(self) -> tuple[str, bytes]:
        """The id and bytes of the key new values are sealed with."""

    def key(self, key_id: str) -> bytes | None:
        """A key by id (older keys still open what they sealed), None if unknown."""

    def index_key(self) -> bytes:
        """The key of the blind indexes."""


@dataclass(frozen=True)
class KeySet:
    current_id: str
    keys: dict[str, bytes]
    index: bytes

    @classmethod
    def parse(cls, raw: Any, where: str) -> KeySet:
        if not isinstance(raw, dict) or not isinstance(raw.get("keys"), dict) or not raw["keys"]:
            raise VaultError(f"{where}: a JSON object with \"current\", \"keys\" and \"index_key\" is needed")
        keys = {str(kid): _key_bytes(value, f"{where}: key {kid}") for kid, value in raw["keys"].items()}
        current = raw.get("current")
        if current not in keys:
            raise VaultError(f"{where}: \"current\" must name one of the keys ({', '.join(sorted(keys))})")
        if any(":" in kid or not kid for kid in keys):
            raise VaultError(f"{where}: key ids must be non-empty and contain no ':'")
        return cls(str(current), keys, _key_bytes(raw.get("index_key"), f"{where}: index_key"))

    def to_json(self) -> dict[str, Any]:
        return {"current": self.current_id,
                "keys": {kid: base64.b64encode(key).decode() for kid, key in self.keys.items()},
                "index_key": base64.b64encode(self.index).decode()}

    def fingerprint(self) -> str:
        """Identifies a key set without revealing it (to compare with the demo's)."""
        material = b"".join(sorted(self.keys.values())) + self.index
        return hashlib.sha256(material).hexdigest()


def _key_bytes(value: Any, what: str) -> bytes:
    try:
        key = base64.b64decode(str(value), validate=True)
    except (ValueError, TypeError) as exc:
        raise VaultError(f"{what}: not base64") from exc
    if len(key) != KEY_BYTES:
        raise VaultError(f"{what}: {KEY_BYTES} bytes are needed, got {len(key)}")
    return key


def new_key_id(at: datetime | None = None) -> str:
    moment = at or datetime.now(UTC)
    return f"k{moment:%Y%m%d}-{secrets.token_hex(3)}"


def new_key_set() -> KeySet:
    kid = new_key_id()
    return KeySet(kid, {kid: secrets.token_bytes(KEY_BYTES)}, secrets.token_bytes(KEY_BYTES))


class FileKeyRing:
    """The key set of a JSON file, re-read when the file changes (checked at most every
    `recheck_s` seconds)."""

    def __init__(self, path: Path, *, recheck_s: float = 5.0) -> None:
        self.path = path
        self._recheck_s = recheck_s
        self._checked = 0.0
        self._stamp: tuple[int, ...] | None = None
        self._set = self._read()

    @classmethod
    def create(cls, path: Path) -> FileKeyRing:
        """The file's keys; a new file with one key, readable by its owner only, when
        there is none yet (dev and test). Two processes starting together end up with
        the same file: the first one's."""
        keyfiles.create_once(path, new_key_set().to_json())
        return cls(path)

    def _read(self) -> KeySet:
        try:
            stat = self.path.stat()
            raw = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise VaultError(f"{self.path}: cannot read the data keys ({exc.__class__.__name__})") from exc
        self._stamp = keyfiles.stamp(stat)
        return KeySet.parse(raw, str(self.path))

    def _fresh(self) -> KeySet:
        clock = time.monotonic()
        if clock - self._checked >= self._recheck_s:
            self._checked = clock
            try:
                stat = self.path.stat()
                if keyfiles.stamp(stat) != self._stamp:
                    self._set = self._read()
            except (OSError, VaultError):
                pass  # a file being rewritten: keep the keys we have, look again later
        return self._set

    @property
    def key_set(self) -> KeySet:
        return self._fresh()

    def current(self) -> tuple[str, bytes]:
        keys = self._fresh()
        return keys.current_id, keys.keys[keys.current_id]

    def key(self, key_id: str) -> bytes | None:
        return self._fresh().keys.get(key_id)

    def index_key(self) -> bytes:
        return self._fresh().index


def write_key_file(path: Path, keys: KeySet) -> None:
    """Writes atomically (a reader sees the old file or the new one), mode 0600."""
    keyfiles.replace(path, keys.to_json())


def normalise(text: str) -> str:
    """What a blind index compares: case, accents and spacing do not matter."""
    folded = unicodedata.normalize("NFKD", text.casefold())
    return " ".join("".join(c for c in folded if not unicodedata.combining(c)).split())


class Vault:
    def __init__(self, keys: KeyRing) -> None:
        self._keys = keys

    def current_key_id(self) -> str:
        return self._keys.current()[0]

    def seal(self, plaintext: str, context: str) -> str:
        kid, key = self._keys.current()
        nonce = secrets.token_bytes(NONCE_BYTES)
        sealed = AESGCM(key).encrypt(nonce, plaintext.encode("utf-8"), context.encode("utf-8"))
        return f"{PREFIX}:{kid}:{base64.urlsafe_b64encode(nonce + sealed).decode().rstrip('=')}"

    def open(self, stored: str, context: str) -> str:
        """The plaintext of a sealed value. A value stored before encryption at rest
        (no `rv1:` prefix) is returned as it is, until the re-sealing loop seals it."""
        if not is_sealed(stored):
            return stored
        kid, body = key_id_of(stored), stored.split(":", 2)[-1]
        if kid is None:
            raise VaultError(f"a value of {context.split(':', 1)[0]} does not open (cut short)")
        key = self._keys.key(kid)
        if key is None:
            raise VaultError(f"a value of {context.split(':', 1)[0]} is sealed with key {kid!r}, "
                             "which the key file no longer has")
        try:
            raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
            return AESGCM(key).decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], context.encode("utf-8")).decode()
        except (InvalidTag, ValueError) as exc:
            raise VaultError(f"a value of {context.split(':', 1)[0]} does not open (tampered, or moved "
                             "from another row)") from exc

    def seal_json(self, value: Any, context: str) -> str:
        return self.seal(json.dumps(value, ensure_ascii=False, separators=(",", ":")), context)

    def open_json(self, stored: str, context: str) -> Any:
        return json.loads(self.open(stored, context))

    def seal_optional(self, plaintext: str | None, context: str) -> str | None:
        return None if plaintext is None else self.seal(plaintext, context)

    def open_optional(self, stored: str | None, context: str) -> str | None:
        return None if stored is None else self.open(stored, context)

    def blind_index(self, kind: str, value: str) -> str:
        """HMAC-SHA256 of the normalised value: equal for equal identities, useless
        without the index key."""
        digest = hmac.new(self._keys.index_key(), f"{kind}\x00{normalise(value)}".encode(), hashlib.sha256)
        return digest.hexdigest()

    def is_current(self, stored: str) -> bool:
        return stored.startswith(f"{PREFIX}:{self.current_key_id()}:")


def is_sealed(stored: str) -> bool:
    return stored.startswith(f"{PREFIX}:")


def key_id_of(stored: str) -> str | None:
    return stored.split(":", 2)[1] if is_sealed(stored) and stored.count(":") >= 2 else None
