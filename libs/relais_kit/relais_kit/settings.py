"""Settings every service reads from the environment."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parents[3]
DEV_SECRET = "relais-dev-secret-not-for-production"


class PlatformSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="", extra="ignore")

    kafka_bootstrap_servers: str = Field(default="127.0.0.1:9092", alias="KAFKA_BOOTSTRAP_SERVERS")
    database_url: str = Field(default="postgresql://postgres@127.0.0.1:5432/postgres", alias="DATABASE_URL")
    env: str = Field(default="dev", alias="RELAIS_ENV")
    schemas_dir: Path = Field(default=REPO_ROOT / "schemas", alias="RELAIS_SCHEMAS_DIR")
    topics_file: Path = Field(default=REPO_ROOT / "deploy" / "topics.yaml", alias="RELAIS_TOPICS_FILE")
    log_level: str = Field(default="info", alias="RELAIS_LOG_LEVEL")
    jwt_secret: str = Field(default=DEV_SECRET, alias="RELAIS_JWT_SECRET")

    def model_post_init(self, _: object) -> None:
        if self.production and self.jwt_secret == DEV_SECRET:
            raise ValueError("RELAIS_JWT_SECRET must be set when RELAIS_ENV=production")

    @property
    def production(self) -> bool:
        return self.env == "production"
