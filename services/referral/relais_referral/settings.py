from pathlib import Path

from pydantic import Field

from relais_kit.settings import REPO_ROOT, PlatformSettings

DEMO_OPERATOR_KEYS = REPO_ROOT / "deploy" / "demo" / "operator-keys"


class ReferralSettings(PlatformSettings):
    port: int = Field(default=8000, alias="RELAIS_REFERRAL_PORT")
    host: str = Field(default="127.0.0.1", alias="RELAIS_HOST")
    db_schema: str = Field(default="referral", alias="RELAIS_REFERRAL_DB_SCHEMA")
    overdue_check_s: float = Field(default=60.0, gt=0, alias="RELAIS_OVERDUE_CHECK_S")
    # `<code>.public.jwk.json` per operator: the keys personal data is sealed with.
    operator_keys_dir: Path = Field(default=DEMO_OPERATOR_KEYS, alias="RELAIS_OPERATOR_KEYS_DIR")

    def model_post_init(self, context: object) -> None:
        super().model_post_init(context)
        if self.production and self.operator_keys_dir.resolve() == DEMO_OPERATOR_KEYS.resolve():
            raise ValueError("RELAIS_OPERATOR_KEYS_DIR must name the operators' registered keys when "
                             "RELAIS_ENV=production (the demo keys are public)")
