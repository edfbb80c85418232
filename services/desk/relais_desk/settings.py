"""The desk's settings, on top of the platform's. One desk process serves one
operator: it holds that operator's Kafka credentials and private key."""

from __future__ import annotations

import re
from pathlib import Path
from typing import ClassVar

from pydantic import Field, field_validator

from relais_kit.settings import REPO_ROOT, PlatformSettings

DEMO_KEYS = REPO_ROOT / "deploy" / "demo" / "operator-keys"
_CODE = re.compile(r"^[a-z][a-z-]{1,40}$")


class DeskSettings(PlatformSettings):
    # Signs its own tokens with its own keys (RELAIS_TOKEN_KEYS_FILE).
    token_role: ClassVar[str] = "issuer"
    operator: str = Field(alias="RELAIS_DESK_OPERATOR")
    port: int = Field(default=8003, alias="RELAIS_DESK_PORT")
    host: str = Field(default="127.0.0.1", alias="RELAIS_HOST")
    private_key: Path | None = Field(default=None, alias="RELAIS_DESK_PRIVATE_KEY")
    # One schema per desk: two desks (two operators) on one database must not share an
    # outbox (its relay publishes every row under one operator's name).
    db_schema: str | None = Field(default=None, alias="RELAIS_DESK_DB_SCHEMA")
    demo_data: bool = Field(default=False, alias="RELAIS_DEMO_DATA")
    session_hours: float = Field(default=10.0, gt=0, le=24, alias="RELAIS_DESK_SESSION_HOURS")
    # A case answered, rejected or cancelled longer ago than this loses its personal data.
    retention_days: int = Field(default=180, ge=1, alias="RELAIS_DESK_RETENTION_DAYS")
    # How often the open cases are counted for /metrics (relais_desk_open_cases).
    ops_gauges_s: float = Field(default=15.0, gt=0, alias="RELAIS_OPS_GAUGES_S")

    @field_validator("operator")
    @classmethod
    def _operator_code(cls, value: str) -> str:
        if not _CODE.match(value):
            raise ValueError("RELAIS_DESK_OPERATOR must be an operator code such as `caf` or `justice`")
        return value

    def model_post_init(self, context: object) -> None:
        super().model_post_init(context)
        # A demo key is refused by its content when the key is loaded (adapters/keys.py).
        if self.production and self.private_key is None:
            raise ValueError("RELAIS_DESK_PRIVATE_KEY must be set when RELAIS_ENV=production")

    @property
    def schema_name(self) -> str:
        return self.db_schema or f"desk_{self.operator.replace('-', '_')}"

    @property
    def key_file(self) -> Path:
        if self.private_key is not None:
            return self.private_key
        return DEMO_KEYS / f"{self.operator}.private.jwk.json"
