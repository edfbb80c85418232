"""Token keys for the tests: a test issuer standing for the referral service (its own
key file in a temporary folder), and its JWKS as a file that the sites and
notifications services started in-process read (`RELAIS_TOKEN_JWKS_URL=file://…`)."""

from __future__ import annotations

import atexit
import json
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

from relais_kit.auth import ALL_APIS, REFERRAL_ISSUER, User, issue_token
from relais_kit.tokenkeys import FileTokenKeys
from relais_kit.tokens import TokenSigner

KEYS_DIR = Path(tempfile.mkdtemp(prefix="relais-test-tokens-"))
atexit.register(shutil.rmtree, KEYS_DIR, True)
KEYS_FILE = KEYS_DIR / "referral.json"
SIGNER = TokenSigner(FileTokenKeys.create(KEYS_FILE), REFERRAL_ISSUER)
JWKS_FILE = KEYS_DIR / "jwks.json"
JWKS_FILE.write_text(json.dumps(SIGNER.jwks()))
JWKS_URL = JWKS_FILE.as_uri()


def token_for(user: User, audiences: Sequence[str] = ALL_APIS) -> str:
    return issue_token(user, SIGNER, audiences=audiences)


def bearer_for(user: User, audiences: Sequence[str] = ALL_APIS) -> dict[str, str]:
    return {"Authorization": f"Bearer {token_for(user, audiences)}"}
