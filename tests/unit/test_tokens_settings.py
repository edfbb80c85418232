"""Which keys each process needs: production refuses to start without them (the
issuers' private key files, the verifiers' JWKS URL), dev and test create their own
under .data/keys, and the HMAC secret every service once shared is refused."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from relais_desk.settings import DeskSettings
from relais_kit import tokenkeys
from relais_kit.settings import REPO_ROOT, PlatformSettings
from relais_kit.tokens import signer_from
from relais_notifications.settings import NotificationsSettings
from relais_referral.settings import ReferralSettings
from relais_sites.settings import SitesSettings

PRODUCTION: dict[str, Any] = {"RELAIS_ENV": "production", "RELAIS_DATA_KEYS_FILE": "/run/secrets/data-keys.json"}
JWKS = "https://relais.example/.well-known/jwks.json"


@pytest.fixture(autouse=True)
def clean(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("RELAIS_ENV", "RELAIS_JWT_SECRET", "RELAIS_TOKEN_KEYS_FILE", "RELAIS_TOKEN_JWKS_URL",
                 "RELAIS_DATA_KEYS_FILE", "RELAIS_DESK_PRIVATE_KEY"):
        monkeypatch.delenv(name, raising=False)


def test_the_issuers_need_their_key_file_in_production(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="RELAIS_TOKEN_KEYS_FILE must be set when RELAIS_ENV=production"):
        ReferralSettings(**PRODUCTION)
    with pytest.raises(ValueError, match="RELAIS_TOKEN_KEYS_FILE must be set"):
        DeskSettings(**PRODUCTION, RELAIS_DESK_OPERATOR="justice", RELAIS_DESK_PRIVATE_KEY="/run/secrets/k.json")
    missing = ReferralSettings(**PRODUCTION, RELAIS_TOKEN_KEYS_FILE=str(tmp_path / "absent.json"),
                               RELAIS_PUBLIC_URL="https://relais.example")
    with pytest.raises(tokenkeys.TokenKeyError, match="cannot read the token keys"):
        signer_from(missing, "referral", "relais-referral")  # never created in production
    assert not (tmp_path / "absent.json").exists()


def test_the_verifiers_need_an_https_or_file_jwks_in_production() -> None:
    for settings in (SitesSettings, NotificationsSettings):
        with pytest.raises(ValueError, match="RELAIS_TOKEN_JWKS_URL must be set"):
            settings(**PRODUCTION)
        with pytest.raises(ValueError, match="https:// or file://"):
            settings(**PRODUCTION, RELAIS_TOKEN_JWKS_URL="http://referral:8000/.well-known/jwks.json")
        assert settings(**PRODUCTION, RELAIS_TOKEN_JWKS_URL=JWKS).jwks_url == JWKS
        assert settings(**PRODUCTION, RELAIS_TOKEN_JWKS_URL="file:///run/jwks.json").production
        assert not settings(**PRODUCTION, RELAIS_TOKEN_JWKS_URL=JWKS).token_keys_file  # holds no private key


def test_other_processes_need_neither() -> None:
    assert PlatformSettings(**PRODUCTION).production


@pytest.mark.parametrize("env", ["dev", "test", "production"])
def test_the_shared_secret_of_old_is_refused_everywhere(env: str) -> None:
    with pytest.raises(ValueError, match="RELAIS_JWT_SECRET is no longer used"):
        SitesSettings(**{**PRODUCTION, "RELAIS_ENV": env}, RELAIS_TOKEN_JWKS_URL=JWKS,
                      RELAIS_JWT_SECRET="a-secret-every-service-once-shared")


def test_dev_keys_are_one_file_per_issuer_under_data_keys() -> None:
    settings = ReferralSettings(RELAIS_ENV="dev")
    assert settings.token_keys_path("referral") == REPO_ROOT / ".data" / "keys" / "tokens-referral.json"
    assert settings.token_keys_path("desk-justice") == REPO_ROOT / ".data" / "keys" / "tokens-desk-justice.json"
    assert SitesSettings(RELAIS_ENV="dev").jwks_url == "http://127.0.0.1:8000/.well-known/jwks.json"


def test_dev_creates_the_key_file_once(tmp_path: Path) -> None:
    settings = ReferralSettings(RELAIS_ENV="dev", RELAIS_TOKEN_KEYS_FILE=str(tmp_path / "k" / "tokens.json"))
    first = signer_from(settings, "referral", "relais-referral").jwks()
    assert signer_from(settings, "referral", "relais-referral").jwks() == first
