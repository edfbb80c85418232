"""Settings every service reads from the environment."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parents[3]
DEV_SECRET = "relais-dev-secret-not-for-production"
# `dev` and `test` accept the demo accounts, the public demo keys and the dev secret;
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
    jwt_secret: str = Field(default=DEV_SECRET, alias="RELAIS_JWT_SECRET")
    # The data keys personal data is sealed with at rest (relais_kit.vault). Required in
    # production; in dev and test, `.data/keys/<schema>.json` is created when missing.
    data_keys_file: Path | None = Field(default=None, alias="RELAIS_DATA_KEYS_FILE")
    # The retention job (relais_kit.retention): how often it runs, and how long the
    # plumbing keeps what it needs (published outbox rows, processed event ids).
    retention_check_s: float = Field(default=3600.0, gt=0, alias="RELAIS_RETENTION_CHECK_S")
    retention_outbox_days: int = Field(default=30, ge=1, alias="RELAIS_RETENTION_OUTBOX_DAYS")
    retention_processed_events_days: int = Field(default=100, ge=1, alias="RELAIS_RETENTION_PROCESSED_EVENTS_DAYS")
    # The largest request body any route reads (413 beyond, before parsing).
    max_body_bytes: int = Field(default=256 * 1024, ge=1024, alias="RELAIS_MAX_BODY_BYTES")

    def model_post_init(self, _: object) -> None:
        if self.env not in ENVIRONMENTS:
            raise ValueError(f"RELAIS_ENV must be one of {', '.join(ENVIRONMENTS)} (got {self.env!r})")
        if self.production and self.jwt_secret == DEV_SECRET:
            raise ValueError("RELAIS_JWT_SECRET must be set when RELAIS_ENV=production")
        if self.production and self.data_keys_file is None:
            raise ValueError("RELAIS_DATA_KEYS_FILE must be set when RELAIS_ENV=production "
                             "(personal data is sealed at rest with its keys)")

    def data_keys_path(self, schema: str) -> Path:
        return self.data_keys_file or REPO_ROOT / ".data" / "keys" / f"{schema}.json"

    @property
    def production(self) -> bool:
        return self.env == "production"
