from pydantic import Field

from relais_kit.settings import PlatformSettings


class ReferralSettings(PlatformSettings):
    port: int = Field(default=8000, alias="RELAIS_REFERRAL_PORT")
    host: str = Field(default="127.0.0.1", alias="RELAIS_HOST")
    db_schema: str = Field(default="referral", alias="RELAIS_REFERRAL_DB_SCHEMA")
    overdue_check_s: float = Field(default=60.0, gt=0, alias="RELAIS_OVERDUE_CHECK_S")
