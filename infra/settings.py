"""Where Quorum's servers are: one settings object, read from the environment.

Every variable starts with ``QUORUM_``; nested groups use a double underscore, e.g.
``QUORUM_DATABASE__URL`` or ``QUORUM_S3__ENDPOINT_URL``. The defaults are the embedded stack:
SQLite, a local dataset store, and a Temporal dev server on localhost:7233.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PLACEHOLDER_SECRETS = {
    "",
    "change-me",
    "dev-operator-token",
    "dev-auditor-token",
    "dev-signing-key",
}


def default_home() -> Path:
    """The directory for Quorum's local state and built tools (outside any clone)."""
    return Path(os.environ.get("QUORUM_HOME", Path.home() / ".cache" / "quorum"))


class TemporalSettings(BaseModel):
    address: str = "localhost:7233"
    namespace: str = "default"
    task_queue: str = "quorum"
    ui_url: str = "http://localhost:8233"
    # TLS for a real cluster (Temporal Cloud or a self-hosted one behind mTLS).
    tls: bool = False
    api_key: SecretStr | None = None


class DatabaseSettings(BaseModel):
    # sqlite+aiosqlite:///path or postgresql+asyncpg://user:pass@host:port/db
    url: str = ""
    echo: bool = False
    # PostgreSQL connections per process: ``pool_size`` kept open, up to ``max_overflow`` more
    # (unset: as many again as pool_size) under load. A request that finds all of them busy
    # waits ``pool_timeout`` seconds, then the API answers 503 with Retry-After (the client
    # retries; submissions are idempotent). Keep processes x (pool_size + max_overflow) under
    # the server's max_connections.
    pool_size: int = Field(default=10, ge=1)
    max_overflow: int | None = Field(default=None, ge=0)
    pool_timeout: float = Field(default=30.0, gt=0)
    # Ping a pooled connection before use when it sat idle this long (a server restart or an
    # idle timeout may have dropped it); 0 pings on every checkout.
    ping_after_idle_seconds: float = Field(default=10.0, ge=0)

    def resolved_url(self, home: Path) -> str:
        return self.url or f"sqlite+aiosqlite:///{home / 'data' / 'quorum.db'}"


class StoreSettings(BaseModel):
    """The dataset store: a local directory (embedded default) or an S3 bucket."""

    backend: Literal["local", "s3"] = "local"
    local_root: str = ""
    bucket: str = "quorum-datasets"
    prefix: str = ""

    def resolved_root(self, home: Path) -> Path:
        # Keys already start with "datasets/", so the default root is the data directory.
        return Path(self.local_root) if self.local_root else home / "data"


class S3Settings(BaseModel):
    endpoint_url: str | None = None  # None means AWS itself
    region: str = "us-east-1"
    access_key_id: SecretStr | None = None
    secret_access_key: SecretStr | None = None
    presign_seconds: int = 300


class ApiSettings(BaseModel):
    host: str = "127.0.0.1"
    port: int = 8000
    # The operator's bearer token; annotators and experts get their own tokens from the API.
    operator_token: SecretStr = SecretStr("dev-operator-token")
    # The auditor's bearer token: read-only access to the audit API.
    auditor_token: SecretStr = SecretStr("dev-auditor-token")
    # Signs task links (HS256): at least 32 random bytes in production.
    link_secret: SecretStr = SecretStr("dev-signing-key")
    # Where the API can be reached by simulated annotators and links it prints.
    public_url: str = ""
    # uvicorn: server processes sharing the port (each has its own database pool).
    workers: int = Field(default=1, ge=1)
    # How long an idle keep-alive connection stays open. It must outlast the idle timeout of
    # whatever reuses connections in front of the API (httpx keeps them 5 s, nginx and cloud
    # load balancers 60 s): a server that closes first races the client's next request on that
    # connection, and the request is reset. uvicorn's own default (5 s) loses that race.
    keep_alive_seconds: int = Field(default=75, ge=1)
    # Pending connections the kernel queues before accept(); capped by net.core.somaxconn.
    backlog: int = Field(default=2048, ge=1)
    # Concurrent connections (and requests) one process serves before answering 503; unset
    # means no limit (requests queue for a database connection instead).
    limit_concurrency: int | None = Field(default=None, ge=1)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="QUORUM_", env_nested_delimiter="__", extra="ignore"
    )

    environment: Literal["development", "test", "production"] = "development"
    home: Path = Field(default_factory=default_home)
    temporal: TemporalSettings = TemporalSettings()
    database: DatabaseSettings = DatabaseSettings()
    store: StoreSettings = StoreSettings()
    s3: S3Settings = S3Settings()
    api: ApiSettings = ApiSettings()

    @model_validator(mode="after")
    def _no_placeholder_secrets_in_production(self) -> Settings:
        if self.environment == "production":
            if self.api.operator_token.get_secret_value() in PLACEHOLDER_SECRETS:
                raise ValueError(
                    "QUORUM_API__OPERATOR_TOKEN must be set to a real secret in production"
                )
            if self.api.auditor_token.get_secret_value() in PLACEHOLDER_SECRETS:
                raise ValueError(
                    "QUORUM_API__AUDITOR_TOKEN must be set to a real secret in production"
                )
            link_secret = self.api.link_secret.get_secret_value()
            if link_secret in PLACEHOLDER_SECRETS or len(link_secret.encode()) < 32:
                raise ValueError(
                    "QUORUM_API__LINK_SECRET must be a real secret of at least 32 bytes "
                    "in production"
                )
        return self

    @property
    def database_url(self) -> str:
        return self.database.resolved_url(self.home)


@lru_cache
def get_settings() -> Settings:
    return Settings()
