"""The desk's private key in production: a copy of a public demo key is refused by its
content, wherever it was copied and whatever its name; a key of the operator's own is
taken; no key at all is refused."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from joserfc.jwk import ECKey

from relais_desk.adapters.keys import KeyProblem
from relais_desk.app import create_app
from relais_desk.settings import DEMO_KEYS, DeskSettings
from relais_kit import tokenkeys

PRODUCTION: dict[str, Any] = {"RELAIS_ENV": "production", "RELAIS_DESK_OPERATOR": "justice",
                              "RELAIS_TOKEN_KEYS_FILE": "/run/secrets/desk-justice-token-keys.json",
                              "RELAIS_DATA_KEYS_FILE": "/run/secrets/desk-justice-data-keys.json"}


def settings(**values: Any) -> DeskSettings:
    return DeskSettings(**{**PRODUCTION, **values})


def test_production_refuses_a_demo_key_copied_anywhere(tmp_path: Path) -> None:
    copy = tmp_path / "secrets" / "operator.jwk.json"
    copy.parent.mkdir()
    shutil.copy(DEMO_KEYS / "justice.private.jwk.json", copy)
    with pytest.raises(KeyProblem) as refused:
        create_app(settings(RELAIS_DESK_PRIVATE_KEY=str(copy)))
    assert "RELAIS_DESK_PRIVATE_KEY" in str(refused.value) and "demo" in str(refused.value)
    # Another operator's demo key is a demo key too.
    shutil.copy(DEMO_KEYS / "caf.private.jwk.json", copy)
    with pytest.raises(KeyProblem):
        create_app(settings(RELAIS_DESK_PRIVATE_KEY=str(copy)))


def test_production_takes_a_key_of_the_operators_own(tmp_path: Path) -> None:
    own = tmp_path / "justice.private.jwk.json"
    own.write_text(json.dumps({**ECKey.generate_key("P-256", private=True).as_dict(private=True),
                               "kid": "justice-2026-12"}))
    tokens = tmp_path / "token-keys.json"
    tokenkeys.cmd_new(tokens)
    app = create_app(settings(RELAIS_DESK_PRIVATE_KEY=str(own), RELAIS_TOKEN_KEYS_FILE=str(tokens)))
    assert app.title.endswith("(justice)")
    assert app.state.token_signer.issuer == "relais-desk:justice"


def test_outside_production_the_demo_key_is_the_default(tmp_path: Path) -> None:
    app = create_app(DeskSettings(RELAIS_ENV="dev", RELAIS_DESK_OPERATOR="justice"))
    assert app.title.endswith("(justice)")


def test_production_needs_a_key() -> None:
    with pytest.raises(ValueError, match="RELAIS_DESK_PRIVATE_KEY must be set"):
        settings()
