"""The sites service's settings, from the environment."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from pydantic import Field

from relais_kit.settings import REPO_ROOT, PlatformSettings


class SitesSettings(PlatformSettings):
    # Verifies the referral service's bearer tokens with its published keys.
    token_role: ClassVar[str] = "verifier"
    host: str = Field(default="127.0.0.1", alias="RELAIS_HOST")
    port: int = Field(default=8001, alias="RELAIS_SITES_PORT")
    demo_data: bool = Field(default=False, alias="RELAIS_DEMO_DATA")
    demo_file: Path = Field(default=REPO_ROOT / "deploy" / "demo" / "sites.yaml",
                            alias="RELAIS_SITES_DEMO_FILE")


def load_settings() -> SitesSettings:
    """Reads the environment. (mypy, without the pydantic plugin, takes the kit's
    aliased fields for required constructor arguments.)"""
    return SitesSettings()  # type: ignore[call-arg]
