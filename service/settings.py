"""Settings, read once from `ABLATE_*` environment variables (pydantic-settings).

S3 endpoints and credentials are not here: boto3 reads its own standard variables
(`AWS_ENDPOINT_URL_S3`, `AWS_ENDPOINT_URL`, `AWS_ACCESS_KEY_ID`, ...) and credential chain.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Literal
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PLACEHOLDER_SECRETS = {"changeme", "change-me", "password", "secret"}


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ABLATE_", extra="ignore")

    store: str = "./ablate-results"
    """Where runs and studies are stored: a directory, or s3://bucket/prefix."""
    broker_url: str = "redis://127.0.0.1:6379/0"
    """redis:// or rediss:// (TLS) URL of the queue; a password here is allowed but
    ABLATE_REDIS_PASSWORD keeps it out of the URL."""
    redis_password: SecretStr | None = None
    broker_ca_certs: str | None = None
    """CA bundle that signs the Redis server's certificate (rediss://)."""
    broker_cert_reqs: Literal["required", "optional", "none"] = "required"
    queue: str = Field("ablate", pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
    """Celery queue the runs are sent to; split GPU and CPU pools with different names."""
    run_time_limit: int = Field(6 * 3600, gt=0)
    """Seconds one run may train: it stops at the next epoch end after this (hard limit: + 5% + 5 s)."""
    visibility_timeout: int = Field(7 * 3600, gt=0)
    """Seconds Redis waits before redelivering an unacknowledged run; longer than a run."""
    store_outage_seconds: float = Field(60.0, ge=0.0)
    """How long S3 operations keep retrying an unreachable endpoint before failing."""
    max_attempts: int = Field(3, gt=0, le=100)
    """Attempts of a run whose worker dies before the run is marked failed."""
    lease_seconds: float = Field(60.0, ge=1.0)
    """Expiry of a run's lease in Redis, renewed every third of it while the run trains."""
    data_roots: str | None = None
    """Folders (separated by ':') that local dataset paths must stay inside; unset: anywhere.
    Workers serving many users should set it (the image sets /data)."""
    factory_modules: str | None = None
    """Module prefixes (comma-separated, * for any) whose `model.factory` functions may be
    imported and run; unset: none on a Celery worker, any in `ablate run` (the user's own
    machine). A factory is code that every worker would run for whoever submits a study."""
    max_dataset_bytes: int = Field(4 * 1024**3, gt=0)
    """Largest dataset accepted, in bytes: an .npz file and the arrays its headers declare, an
    image folder's files and its decoded images. Checked before anything is loaded."""
    dataset_cache: str = "~/.cache/ablate/datasets"
    """Where s3:// datasets are downloaded, once per worker, keyed by their ETags."""
    runs_per_gpu: int = Field(1, ge=1, le=64)
    """Runs `ablate worker` trains at once on each GPU (each in its own pool process)."""
    gpu_memory_mb: int | None = Field(None, gt=0)
    """GPU memory cap of each training process in MiB; unset: memory growth with one run per
    GPU, an equal share of 90% of the GPU with several (`ablate worker` sets it for those)."""
    max_runs_per_process: int | None = Field(None, gt=0)
    """Runs a worker pool process trains before it is replaced by a fresh one; unset: never."""
    log_format: Literal["auto", "console", "json"] = "auto"
    """auto: key-value lines on a terminal, JSON otherwise (containers)."""
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    environment: Literal["development", "production"] = "development"
    """production refuses placeholder secrets."""

    @field_validator("broker_url")
    @classmethod
    def _redis_url(cls, value: str) -> str:
        scheme = urlsplit(value).scheme
        if scheme not in ("redis", "rediss"):
            raise ValueError(f"must be a redis:// or rediss:// URL, got scheme {scheme!r}")
        return value

    @model_validator(mode="after")
    def _password_out_of_the_query(self) -> Settings:
        # redis://host/0?password=... is a form redis-py reads, but kombu then receives the
        # password twice (and Celery stops with a TypeError): keep it as ABLATE_REDIS_PASSWORD.
        parts = urlsplit(self.broker_url)
        pairs = parse_qsl(parts.query, keep_blank_values=True)
        passwords = [value for name, value in pairs if name == "password"]
        if passwords:
            if self.redis_password is None:
                self.redis_password = SecretStr(passwords[-1])
            query = urlencode([(name, value) for name, value in pairs if name != "password"])
            self.broker_url = urlunsplit(parts._replace(query=query))
        return self

    @model_validator(mode="after")
    def _checks(self) -> Settings:
        if self.visibility_timeout <= self.hard_time_limit:
            raise ValueError(
                f"ABLATE_VISIBILITY_TIMEOUT ({self.visibility_timeout}s) must be longer than a "
                f"run's hard time limit ({self.hard_time_limit}s: ABLATE_RUN_TIME_LIMIT + 5%), "
                "or Redis would redeliver a run that is still training"
            )
        if self.environment == "production":
            password = self.redis_password.get_secret_value() if self.redis_password else None
            if password and password.lower() in PLACEHOLDER_SECRETS:
                raise ValueError("ABLATE_REDIS_PASSWORD is a placeholder; set a real secret")
        return self

    @property
    def hard_time_limit(self) -> int:
        """Seconds after which the worker kills a run that ignored its soft limit."""
        return int(self.run_time_limit * 1.05) + 5

    def broker_url_with_password(self) -> str:
        """The broker URL with ABLATE_REDIS_PASSWORD filled in (never log this)."""
        if self.redis_password is None:
            return self.broker_url
        parts = urlsplit(self.broker_url)
        host = parts.netloc.rsplit("@", 1)[-1]
        user = parts.username or ""
        password = quote(self.redis_password.get_secret_value(), safe="")
        return urlunsplit(parts._replace(netloc=f"{user}:{password}@{host}"))

    def broker_url_redacted(self) -> str:
        """The broker URL safe to print: every credential replaced by ***."""
        from service.logs import redact_url

        parts = urlsplit(self.broker_url)
        if parts.password is None and self.redis_password is None:
            return redact_url(self.broker_url)
        host = parts.netloc.rsplit("@", 1)[-1]
        return redact_url(urlunsplit(parts._replace(netloc=f"{parts.username or ''}:***@{host}")))


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
