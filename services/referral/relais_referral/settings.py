from pathlib import Path
from typing import ClassVar

from limits import parse
from pydantic import Field

from relais_kit import throttle
from relais_kit.settings import REPO_ROOT, PlatformSettings

DEMO_OPERATOR_KEYS = REPO_ROOT / "deploy" / "demo" / "operator-keys"


class ReferralSettings(PlatformSettings):
    # Signs its own tokens with its own keys (RELAIS_TOKEN_KEYS_FILE).
    token_role: ClassVar[str] = "issuer"
    port: int = Field(default=8000, alias="RELAIS_REFERRAL_PORT")
    host: str = Field(default="127.0.0.1", alias="RELAIS_HOST")
    db_schema: str = Field(default="referral", alias="RELAIS_REFERRAL_DB_SCHEMA")
    overdue_check_s: float = Field(default=60.0, gt=0, alias="RELAIS_OVERDUE_CHECK_S")
    # How often the gauges of referrals waiting on each operator are counted (/metrics).
    ops_gauges_s: float = Field(default=15.0, gt=0, alias="RELAIS_OPS_GAUGES_S")
    # `<code>.public.jwk.json` per operator: the keys personal data is sealed with.
    operator_keys_dir: Path = Field(default=DEMO_OPERATOR_KEYS, alias="RELAIS_OPERATOR_KEYS_DIR")
    # Sign-in of agents through OpenID Connect (ProConnect in production); off without an issuer.
    oidc_issuer: str = Field(default="", alias="RELAIS_OIDC_ISSUER")
    oidc_client_id: str = Field(default="", alias="RELAIS_OIDC_CLIENT_ID")
    oidc_client_secret: str = Field(default="", alias="RELAIS_OIDC_CLIENT_SECRET")
    oidc_redirect_url: str = Field(default="", alias="RELAIS_OIDC_REDIRECT_URL")  # …/connexion/proconnect/retour
    oidc_scopes: str = Field(default="openid email given_name usual_name uid", alias="RELAIS_OIDC_SCOPES")
    # The provider releases verified e-mail addresses only, whether or not it sends
    # `email_verified`: an agent's first sign-in may then bind them to the account of
    # that address (service_layer.proconnect).
    oidc_emails_verified: bool = Field(default=False, alias="RELAIS_OIDC_EMAILS_VERIFIED")
    # Sign-in attempts (password) let through before 429, in the `limits` notation.
    signin_limit_per_account: str = Field(default=throttle.DEFAULT_PER_ACCOUNT,
                                          alias="RELAIS_SIGNIN_LIMIT_PER_ACCOUNT")
    signin_limit_per_address: str = Field(default=throttle.DEFAULT_PER_ADDRESS,
                                          alias="RELAIS_SIGNIN_LIMIT_PER_ADDRESS")
    # The lifecycle of citizens' personal data (domain/retention.py), in days: kept after a
    # referral is closed or cancelled; after a visit closed without a referral (solved on
    # the spot, abandoned); for anything untouched that long, open or not.
    retention_referral_days: int = Field(default=180, ge=1, alias="RELAIS_RETENTION_REFERRAL_DAYS")
    retention_visit_days: int = Field(default=90, ge=1, alias="RELAIS_RETENTION_VISIT_DAYS")
    retention_inactive_days: int = Field(default=730, ge=1, alias="RELAIS_RETENTION_INACTIVE_DAYS")
    # The services that answer access and erasure requests on `privacy` (comma-separated).
    privacy_services: str = Field(default="notifications", alias="RELAIS_PRIVACY_SERVICES")
    # The notifications service's API: the adviser's pages fetch a letter to print from it,
    # with a short-lived token of the signed-in adviser.
    notifications_url: str = Field(default="http://127.0.0.1:8002", alias="RELAIS_NOTIFICATIONS_URL")
    # The citizen's status link: the address it is printed with (the receipt, its QR),
    # e.g. https://relais.example.fr (this service's own address when empty), and how
    # many codes one client address may try (the page /suivi/{code}).
    public_url: str = Field(default="", alias="RELAIS_PUBLIC_URL")
    status_limit_per_address: str = Field(default="20 per minute", alias="RELAIS_STATUS_LIMIT_PER_ADDRESS")

    def model_post_init(self, context: object) -> None:
        super().model_post_init(context)
        for name, value in (("RELAIS_SIGNIN_LIMIT_PER_ACCOUNT", self.signin_limit_per_account),
                            ("RELAIS_SIGNIN_LIMIT_PER_ADDRESS", self.signin_limit_per_address),
                            ("RELAIS_STATUS_LIMIT_PER_ADDRESS", self.status_limit_per_address)):
            try:
                parse(value)
            except ValueError as exc:
                raise ValueError(f"{name} must read like '10 per 5 minutes' (got {value!r})") from exc
        if self.production and not self.public_url.strip().startswith("https://"):
            # Else the links citizens get would point at this process's own address.
            raise ValueError("RELAIS_PUBLIC_URL must be the https:// address citizens open their status "
                             "link at when RELAIS_ENV=production")
        if self.oidc_enabled:
            missing = [name for name, value in (("RELAIS_OIDC_CLIENT_ID", self.oidc_client_id),
                                                ("RELAIS_OIDC_CLIENT_SECRET", self.oidc_client_secret),
                                                ("RELAIS_OIDC_REDIRECT_URL", self.oidc_redirect_url)) if not value]
            if missing:
                raise ValueError(f"RELAIS_OIDC_ISSUER is set: {', '.join(missing)} must be set too")
            if "openid" not in self.oidc_scopes.split():
                raise ValueError("RELAIS_OIDC_SCOPES must include openid")
            if self.production and not (self.oidc_issuer.startswith("https://")
                                        and self.oidc_redirect_url.startswith("https://")):
                raise ValueError("RELAIS_OIDC_ISSUER and RELAIS_OIDC_REDIRECT_URL must be https:// URLs "
                                 "when RELAIS_ENV=production")

    @property
    def public_address(self) -> str:
        """The address of the status links sent in the citizen's messages (no request to
        take it from): RELAIS_PUBLIC_URL, else this process's own address."""
        if self.public_url.strip():
            return self.public_url.strip().rstrip("/")
        host = "localhost" if self.host in ("", "0.0.0.0", "::") else self.host
        return f"http://{f'[{host}]' if ':' in host else host}:{self.port}"

    @property
    def privacy_answerers(self) -> list[str]:
        return [name.strip() for name in self.privacy_services.split(",") if name.strip()]

    @property
    def oidc_enabled(self) -> bool:
        return bool(self.oidc_issuer.strip())
