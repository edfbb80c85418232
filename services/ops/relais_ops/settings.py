"""The ops service's settings, from the environment."""

from __future__ import annotations

import re
from typing import ClassVar

from pydantic import Field

from relais_kit.settings import ENVIRONMENTS, PlatformSettings

# The groups in which each service leaves its broker-loss marker (relais_kit.recovery):
# an offset committed as a number, not a consumer's position.
MARKER_GROUPS = r"^relais-.+-broker-marker$"


class OpsSettings(PlatformSettings):
    # Verifies the referral service's bearer tokens with its published keys.
    token_role: ClassVar[str] = "verifier"
    host: str = Field(default="127.0.0.1", alias="RELAIS_HOST")
    port: int = Field(default=8004, alias="RELAIS_OPS_PORT")
    # The lag monitor: one sampling every interval, a window of that many samples.
    lag_interval_s: float = Field(default=10.0, gt=0, alias="RELAIS_LAG_INTERVAL_S")
    lag_window: int = Field(default=10, ge=2, alias="RELAIS_LAG_WINDOW")
    # Groups left out of the lag (a regular expression searched in the name).
    lag_ignore_groups: str = Field(default=MARKER_GROUPS, alias="RELAIS_LAG_IGNORE_GROUPS")
    # The console: where it signs people in (the referral service's token API), the
    # services whose ops API it calls on their behalf, and the Prometheus it asks.
    referral_url: str = Field(default="http://127.0.0.1:8000", alias="RELAIS_REFERRAL_URL")
    sites_url: str = Field(default="http://127.0.0.1:8001", alias="RELAIS_SITES_URL")
    notifications_url: str = Field(default="http://127.0.0.1:8002", alias="RELAIS_NOTIFICATIONS_URL")
    prometheus_url: str = Field(default="http://127.0.0.1:9090", alias="RELAIS_PROMETHEUS_URL")
    # A trace viewer's address for one trace, `{trace_id}` replaced (e.g.
    # https://jaeger.example/trace/{trace_id}); empty: the journey shows trace ids as text.
    trace_url: str = Field(default="", alias="RELAIS_TRACE_URL")
    # How long the console waits for another service or for Prometheus.
    console_timeout_s: float = Field(default=5.0, gt=0, alias="RELAIS_CONSOLE_TIMEOUT_S")

    def model_post_init(self, _: object) -> None:
        # No personal data here: no data keys to require. The console's session cookie is
        # signed with RELAIS_TOKEN_KEYS_FILE (in dev and test, .data/keys/tokens-ops.json).
        if self.env not in ENVIRONMENTS:
            raise ValueError(f"RELAIS_ENV must be one of {', '.join(ENVIRONMENTS)} (got {self.env!r})")
        self._check_token_settings()
        if self.production and self.token_keys_file is None:
            raise ValueError("RELAIS_TOKEN_KEYS_FILE must be set when RELAIS_ENV=production "
                             "(the keys the console signs its session cookie with)")
        try:
            re.compile(self.lag_ignore_groups)
        except re.error as exc:
            raise ValueError(f"RELAIS_LAG_IGNORE_GROUPS is not a regular expression: {exc}") from exc

    @property
    def ignore_groups(self) -> re.Pattern[str] | None:
        return re.compile(self.lag_ignore_groups) if self.lag_ignore_groups else None


def load_settings() -> OpsSettings:
    """Reads the environment. (mypy, without the pydantic plugin, takes the kit's
    aliased fields for required constructor arguments.)"""
    return OpsSettings()  # type: ignore[call-arg]
