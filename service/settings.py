"""Settings, read once from `ABLATE_*` environment variables (pydantic-settings)."""

from __future__ import annotations

from functools import lru_cache
from typing import Literal

from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ABLATE_", extra="ignore")

    store: str = "./ablate-results"
    """Where runs and studies are stored: a directory, or s3://bucket/prefix."""
    log_format: Literal["auto", "console", "json"] = "auto"
    """auto: key-value lines on a terminal, JSON otherwise (containers)."""
    log_level: Literal["debug", "info", "warning", "error"] = "info"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
