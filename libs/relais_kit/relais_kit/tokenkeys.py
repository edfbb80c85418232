"""The keys an issuer signs its tokens with (ES256: ECDSA on P-256), and the CLI of ops
(`python -m relais_kit.tokenkeys`).

Only the issuer holds its private keys; everyone else verifies with the public half,
published as a JWKS (`/.well-known/jwks.json`), each token naming its key in the `kid`
of its header. The referral service is the issuer of the platform's bearer tokens; each
operator desk is an issuer of its own (its session cookies); neither can mint the
other's tokens.

The key file (JSON, mode 0600, a mounted secret in production) holds several keys: the
`current` one signs, all of them verify and are published:

    {"current": "t20261203-a1b2c3",
     "keys": [{"kty": "EC", "crv": "P-256", "x": "…", "y": "…", "d": "…", "kid": "t20261201-…"},
              {"kty": "EC", "crv": "P-256", "x": "…", "y": "…", "d": "…", "kid": "t20261203-a1b2c3"}]}

The issuer re-reads the file when it changes: rotation needs no restart.

    new      FILE           a key file with one key (refused if FILE exists)
    rotate   FILE           a new key, made current at once; the old ones stay published
             --publish-only   …or only published: verifiers learn it before it signs
                              (several issuer instances: `use` it once all publish it)
    use      FILE KID       makes a published key the current one
    retire   FILE KID       removes a key: tokens it signed are refused from then on
                            (wait one token lifetime after the rotation: one hour)
    list     FILE           the keys, the current one marked
    jwks     FILE           the public keys, as the JWKS an issuer publishes"""

from __future__ import annotations

import argparse
import json
import secrets
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec
from jwt import PyJWTError
from jwt.algorithms import ECAlgorithm

from relais_kit import keyfiles

ALGORITHM = "ES256"
CURVE = "P-256"


class TokenKeyError(ValueError):
    """A key file that cannot be used. Messages never quote a private key."""


@dataclass(frozen=True)
class TokenKey:
    kid: str
    private: ec.EllipticCurvePrivateKey

    @property
    def public(self) -> ec.EllipticCurvePublicKey:
        return self.private.public_key()

    def public_jwk(self) -> dict[str, Any]:
        jwk: dict[str, Any] = ECAlgorithm.to_jwk(self.public, as_dict=True)
        return {**jwk, "kid": self.kid, "alg": ALGORITHM, "use": "sig"}

    def private_jwk(self) -> dict[str, Any]:
        jwk: dict[str, Any] = ECAlgorithm.to_jwk(self.private, as_dict=True)
        return {**jwk, "kid": self.kid}


def new_key_id(at: datetime | None = None) -> str:
    return f"t{(at or datetime.now(UTC)):%Y%m%d}-{secrets.token_hex(3)}"


def new_key(kid: str | None = None) -> TokenKey:
    return TokenKey(kid or new_key_id(), ec.generate_private_key(ec.SECP256R1()))


@dataclass(frozen=True)
class TokenKeySet:
    current_id: str
    keys: tuple[TokenKey, ...]

    @classmethod
    def of(cls, *keys: TokenKey, current: str | None = None) -> TokenKeySet:
        return cls(current or keys[-1].kid, tuple(keys))

    @classmethod
    def parse(cls, raw: Any, where: str) -> TokenKeySet:
        if not isinstance(raw, dict) or not isinstance(raw.get("keys"), list) or not raw["keys"]:
            raise TokenKeyError(f"{where}: a JSON object with \"current\" and a list of \"keys\" is needed")
        keys = tuple(_private_key(jwk, f"{where}: key {n}") for n, jwk in enumerate(raw["keys"], 1))
        kids = [key.kid for key in keys]
        if len(set(kids)) != len(kids):
            raise TokenKeyError(f"{where}: two keys have the same kid")
        current = raw.get("current")
        if current not in kids:
            raise TokenKeyError(f"{where}: \"current\" must name one of the keys ({', '.join(kids)})")
        return cls(str(current), keys)

    def to_json(self) -> dict[str, Any]:
        return {"current": self.current_id, "keys": [key.private_jwk() for key in self.keys]}

    @property
    def current(self) -> TokenKey:
        return next(key for key in self.keys if key.kid == self.current_id)

    def public(self, kid: str) -> ec.EllipticCurvePublicKey | None:
        return next((key.public for key in self.keys if key.kid == kid), None)

    def jwks(self) -> dict[str, Any]:
        return {"keys": [key.public_jwk() for key in self.keys]}

    def with_key(self, key: TokenKey, *, current: bool) -> TokenKeySet:
        return TokenKeySet(key.kid if current else self.current_id, (*self.keys, key))

    def using(self, kid: str) -> TokenKeySet:
        if self.public(kid) is None:
            raise TokenKeyError(f"no key {kid!r} (keys: {', '.join(k.kid for k in self.keys)})")
        return TokenKeySet(kid, self.keys)

    def without(self, kid: str) -> TokenKeySet:
        if self.public(kid) is None:
            raise TokenKeyError(f"no key {kid!r} (keys: {', '.join(k.kid for k in self.keys)})")
        if kid == self.current_id:
            raise TokenKeyError(f"{kid} is the current key: rotate (or use another key) first")
        return TokenKeySet(self.current_id, tuple(key for key in self.keys if key.kid != kid))


def _private_key(jwk: Any, where: str) -> TokenKey:
    if not isinstance(jwk, dict):
        raise TokenKeyError(f"{where}: a JWK object is needed")
    kid = jwk.get("kid")
    if not isinstance(kid, str) or not kid or len(kid) > 64:
        raise TokenKeyError(f"{where}: a \"kid\" (1 to 64 characters) is needed")
    if jwk.get("kty") != "EC" or jwk.get("crv") != CURVE or "d" not in jwk:
        raise TokenKeyError(f"{where} ({kid}): a private EC key on {CURVE} is needed (ES256)")
    try:
        key = ECAlgorithm.from_jwk(jwk)
    except (PyJWTError, TypeError, ValueError) as exc:
        raise TokenKeyError(f"{where} ({kid}): not a usable key ({exc.__class__.__name__})") from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise TokenKeyError(f"{where} ({kid}): a private key is needed")
    return TokenKey(kid, key)


# -- the file ------------------------------------------------------------------------------

class FileTokenKeys:
    """The key set of a JSON file, re-read when the file changes (checked at most every
    `recheck_s` seconds): a rotation is taken up without a restart."""

    def __init__(self, path: Path, *, recheck_s: float = 5.0) -> None:
        self.path = path
        self.recheck_s = recheck_s
        self._checked = time.monotonic()
        self._stamp: tuple[int, ...] | None = None
        self._set = self._read()

    @classmethod
    def create(cls, path: Path, *, recheck_s: float = 5.0) -> FileTokenKeys:
        """The file's keys; a new file with one key, readable by its owner only, when
        there is none yet (dev and test). Two processes starting together end up with
        the same file: the first one's."""
        if not path.exists():
            keyfiles.create_once(path, TokenKeySet.of(new_key()).to_json())
        return cls(path, recheck_s=recheck_s)

    def _read(self) -> TokenKeySet:
        try:
            stat = self.path.stat()
            raw = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise TokenKeyError(f"{self.path}: cannot read the token keys ({exc.__class__.__name__})") from exc
        self._stamp = keyfiles.stamp(stat)
        return TokenKeySet.parse(raw, str(self.path))

    @property
    def key_set(self) -> TokenKeySet:
        clock = time.monotonic()
        if clock - self._checked >= self.recheck_s:
            self._checked = clock
            try:
                if keyfiles.stamp(self.path.stat()) != self._stamp:
                    self._set = self._read()
            except (OSError, TokenKeyError):
                pass  # a file being rewritten: keep the keys we have, look again later
        return self._set


def write_key_file(path: Path, keys: TokenKeySet) -> None:
    """Writes atomically (a reader sees the old file or the new one), mode 0600."""
    keyfiles.replace(path, keys.to_json())


# -- the CLI -------------------------------------------------------------------------------

def cmd_new(path: Path) -> str:
    if path.exists():
        raise TokenKeyError(f"{path} exists: use rotate to add a key to it")
    path.parent.mkdir(parents=True, exist_ok=True)
    keys = TokenKeySet.of(new_key())
    write_key_file(path, keys)
    return f"{path}: new token key file, current key {keys.current_id}"


def cmd_rotate(path: Path, *, publish_only: bool = False) -> str:
    keys = FileTokenKeys(path).key_set
    key = new_key()
    write_key_file(path, keys.with_key(key, current=not publish_only))
    if publish_only:
        return (f"{path}: key {key.kid} published; {keys.current_id} still signs. Once every instance of "
                f"the issuer publishes it: use {key.kid}")
    return (f"{path}: key {key.kid} signs from now on; {', '.join(k.kid for k in keys.keys)} still verify. "
            "Retire them once the tokens they signed have expired (one hour).")


def cmd_use(path: Path, kid: str) -> str:
    write_key_file(path, FileTokenKeys(path).key_set.using(kid))
    return f"{path}: key {kid} signs from now on"


def cmd_retire(path: Path, kid: str) -> str:
    write_key_file(path, FileTokenKeys(path).key_set.without(kid))
    return f"{path}: key {kid} removed: the tokens it signed are refused from now on"


def cmd_list(path: Path) -> str:
    keys = FileTokenKeys(path).key_set
    return "\n".join(f"{key.kid}{'  (current: signs)' if key.kid == keys.current_id else ''}" for key in keys.keys)


def cmd_jwks(path: Path) -> str:
    return json.dumps(FileTokenKeys(path).key_set.jwks(), indent=2)


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="python -m relais_kit.tokenkeys", description=__doc__,
                                  formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = top.add_subparsers(dest="command", required=True)
    for name in ("new", "rotate", "use", "retire", "list", "jwks"):
        command = commands.add_parser(name)
        command.add_argument("file", type=Path)
        if name in ("use", "retire"):
            command.add_argument("kid")
        if name == "rotate":
            command.add_argument("--publish-only", action="store_true")
    return top


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        if args.command == "new":
            print(cmd_new(args.file))
        elif args.command == "rotate":
            print(cmd_rotate(args.file, publish_only=args.publish_only))
        elif args.command == "use":
            print(cmd_use(args.file, args.kid))
        elif args.command == "retire":
            print(cmd_retire(args.file, args.kid))
        elif args.command == "list":
            print(cmd_list(args.file))
        else:
            print(cmd_jwks(args.file))
    except TokenKeyError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
