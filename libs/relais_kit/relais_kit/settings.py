"""Settings every service reads from the environment."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parents[3]
# Where the APIs find the referral service's public keys when nothing says otherwise (dev).
DEV_JWKS_URL = "http://127.0.0.1:8000/.well-known/jwks.json"
# `dev` and `test` accept the demo accounts, the public demo keys and dev token keys;
# `production` refuses them. Any other value is refused at start: a typo
# (`prod`, `Production`) must not quietly run with the demo's doors open.
ENVIRONMENTS = ("dev", "test", "production")


class PlatformSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="", extra="ignore")

    kafka_bootstrap_servers: str = Field(default="127.0.0.1:9092", alias="KAFKA_BOOTSTRAP_SERVERS")
    database_url: str = Field(default="postgresql://postgres@127.0.0.1:5432/postgres", alias="DATABASE_URL")
    env: str = Field(default="dev", alias="RELAIS_ENV")
    schemas_dir: Path = Field(default=REPO_ROOT / "schemas", alias="RELAIS_SCHEMAS_DIR")
    topics_file: Path = Field(default=REPO_ROOT / "deploy" / "topics.yaml", alias="RELAIS_TOPICS_FILE")
    log_level: str = Field(default="info", alias="RELAIS_LOG_LEVEL")
    # Signed tokens (relais_kit.tokens, ES256). An issuer (the referral service, each desk)
    # signs with the keys of RELAIS_TOKEN_KEYS_FILE: required in production; in dev and
    # test `.data/keys/tokens-<issuer>.json` is created when missing. The APIs that verify
    # the referral service's tokens fetch its public keys at RELAIS_TOKEN_JWKS_URL
    # (https:// or file:// in production).
    token_keys_file: Path | None = Field(default=None, alias="RELAIS_TOKEN_KEYS_FILE")
    token_jwks_url: str | None = Field(default=None, alias="RELAIS_TOKEN_JWKS_URL")
    # The one HMAC secret every service once shared: refused wherever it is still set.
    retired_jwt_secret: str | None = Field(default=None, alias="RELAIS_JWT_SECRET")
    # What the process does with tokens: "issuer" (signs its own), "verifier" (checks the
    # referral service's), "" (neither).
    token_role: ClassVar[str] = ""
    # The data keys personal data is sealed with at rest (relais_kit.vault). Required in
    # production; in dev and test, `.data/keys/<schema>.json` is created when missing.
    data_keys_file: Path | None = Field(default=None, alias="RELAIS_DATA_KEYS_FILE")
    # The retention job (relais_kit.retention): how often it runs, and how long the
    # plumbing keeps what it needs (published outbox rows, processed event ids).
    retention_check_s: float = Field(default=3600.0, gt=0, alias="RELAIS_RETENTION_CHECK_S")
    retention_outbox_days: int = Field(default=30, ge=1, alias="RELAIS_RETENTION_OUTBOX_DAYS")
    # Losing the broker (relais_kit.recovery): how often each service looks for its marker,
    # and how far back it re-publishes (default: the longest retention of its topics).
    broker_check_s: float = Field(default=2.0, gt=0, alias="RELAIS_BROKER_CHECK_S")
    # A background loop stuck that long (a batch it cannot publish, a record it keeps
    # retrying, restarts that fail at once) turns /healthz unhealthy (relais_kit.progress).
    stall_after_s: float = Field(default=60.0, gt=0, alias="RELAIS_STALL_AFTER_S")
    republish_window_days: float | None = Field(default=None, gt=0, alias="RELAIS_REPUBLISH_WINDOW_DAYS")
    retention_processed_events_days: int = Field(default=100, ge=1, alias="RELAIS_RETENTION_PROCESSED_EVENTS_DAYS")
    # The largest request body any route reads (413 beyond, before parsing).
    max_body_bytes: int = Field(default=256 * 1024, ge=1024, alias="RELAIS_MAX_BODY_BYTES")

    def model_post_init(self, _: object) -> None:
        if self.env not in ENVIRONMENTS:
            raise ValueError(f"RELAIS_ENV must be one of {', '.join(ENVIRONMENTS)} (got {self.env!r})")
        self._check_token_settings()
        if self.production and self.data_keys_file is None:
            raise ValueError("RELAIS_DATA_KEYS_FILE must be set when RELAIS_ENV=production "
                             "(personal data is sealed at rest with its keys)")

    def _check_token_settings(self) -> None:
        if self.retired_jwt_secret is not None:
            raise ValueError("RELAIS_JWT_SECRET is no longer used: remove it (tokens are signed by their issuer "
                             "with RELAIS_TOKEN_KEYS_FILE and verified with its public keys)")
        if self.production and self.token_role == "issuer" and self.token_keys_file is None:
            raise ValueError("RELAIS_TOKEN_KEYS_FILE must be set when RELAIS_ENV=production "
                             "(the private keys this service signs its tokens with)")
        if self.production and self.token_role == "verifier":
            if not self.token_jwks_url:
                raise ValueError("RELAIS_TOKEN_JWKS_URL must be set when RELAIS_ENV=production "
                                 "(the referral service's public keys)")
            if not self.token_jwks_url.startswith(("https://", "file://")):
                raise ValueError("RELAIS_TOKEN_JWKS_URL must be an https:// or file:// URL when "
                                 "RELAIS_ENV=production")

    def token_keys_path(self, issuer: str) -> Path:
        """The issuer's key file; in dev and test, one per issuer under .data/keys."""
        return self.token_keys_file or REPO_ROOT / ".data" / "keys" / f"tokens-{issuer}.json"

    @property
    def jwks_url(self) -> str:
        return self.token_jwks_url or DEV_JWKS_URL

    def data_keys_path(self, schema: str) -> Path:
        return self.data_keys_file or REPO_ROOT / ".data" / "keys" / f"{schema}.json"

    @property
    def production(self) -> bool:
        return self.env == "production"
