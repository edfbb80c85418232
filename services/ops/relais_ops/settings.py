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

    def model_post_init(self, _: object) -> None:
        # No database and no personal data here: no data keys to require.
        if self.env not in ENVIRONMENTS:
            raise ValueError(f"RELAIS_ENV must be one of {', '.join(ENVIRONMENTS)} (got {self.env!r})")
        self._check_token_settings()
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
