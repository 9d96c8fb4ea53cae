"""Configuration from the environment (and a `.env` file); every key is in `.env.example`."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_core import PydanticUseDefault
from pydantic_settings import BaseSettings, SettingsConfigDict

# The well-known keys `supabase start` prints: HS256 JWTs signed with the local default secret.
LOCAL_ANON_KEY = (
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJpc3MiOiJzdXBhYmFzZS1kZW1vIiwicm9sZSI6ImFub24iLCJleHAiOjE5ODM4MTI5OTZ9"
    ".CRXP1A7WOeoJeXxjNni43kdQwgnWNReilDMblYTn_I0"
)
LOCAL_SERVICE_ROLE_KEY = (
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJpc3MiOiJzdXBhYmFzZS1kZW1vIiwicm9sZSI6InNlcnZpY2Vfcm9sZSIsImV4cCI6MTk4MzgxMjk5Nn0"
    ".EGIM96RAZx35lJzdJsyH-qQwv8Hdp7fsn3W0YpN81IU"
)


class Settings(BaseSettings):
    # A key left empty (`KEY=` in .env) is unset: it takes the default, it is never a value.
    model_config = SettingsConfigDict(env_file=".env", extra="ignore", env_ignore_empty=True)

    SUPABASE_URL: str = "http://127.0.0.1:54321"
    SUPABASE_SERVICE_ROLE_KEY: SecretStr = SecretStr(LOCAL_SERVICE_ROLE_KEY)
    DATABASE_URL: str = "postgresql://postgres@127.0.0.1:5432/postgres"
    REDIS_URL: str = "redis://127.0.0.1:6379/0"

    ARQ_QUEUE_NAME: str = "arq:queue"

    WHATSAPP_APP_SECRET: SecretStr | None = None
    WHATSAPP_360DIALOG_WEBHOOK_SECRET: SecretStr | None = None
    WHATSAPP_VERIFY_TOKEN: SecretStr | None = None
    WHATSAPP_API_BASE_URL: str = "https://graph.facebook.com/v21.0"
    WHATSAPP_ACCESS_TOKEN: SecretStr | None = None
    WHATSAPP_360DIALOG_BASE_URL: str = "https://waba-v2.360dialog.io"
    # Provider endpoints a channel's own `api_base_url` may name, comma- or space-separated
    # (unset: the two bases above); any other URL is refused, never sent to.
    WHATSAPP_API_ALLOWED_BASE_URLS: str | None = None
    WHATSAPP_SEND_TIMEOUT_SECONDS: float = 10.0

    BRIDGE_INSECURE_DEV: bool = Field(
        default=False, description="accept unsigned webhooks (local development only)"
    )
    BRIDGE_MAX_BODY_BYTES: int = 3 * 1024 * 1024
    BRIDGE_DB_TIMEOUT_SECONDS: float = 4.0
    BRIDGE_DB_LATE_COMMIT_SECONDS: float = 30.0
    BRIDGE_HEADER_TIMEOUT_SECONDS: float = 10.0
    BRIDGE_BODY_TIMEOUT_SECONDS: float = 30.0
    BRIDGE_METRICS_TOKEN: SecretStr | None = None
    BRIDGE_LOG_LEVEL: str = "INFO"
    # json: one JSON object per line (production); pretty: a readable line per event with routine
    # events at DEBUG, coloured on a terminal unless NO_COLOR is set (`make dev`).
    BRIDGE_LOG_FORMAT: Literal["json", "pretty"] = "json"

    # The worker (arq jobs.worker.WorkerSettings)
    # Turns running at once per worker: a waiting turn (the engine thinking, a reply's delay)
    # holds only memory, so this follows the turns' length times their rate.
    JOBS_MAX_JOBS: int = 200
    # Postgres connections for the worker's statements (plus its lock session and listener):
    # a turn holds one only while a statement runs.
    JOBS_DB_POOL_SIZE: int = 6
    JOBS_POLL_DELAY_SECONDS: float = 0.05
    JOBS_JOB_TIMEOUT_SECONDS: int = 300
    JOBS_SWEEP_AFTER_SECONDS: float = 15.0
    JOBS_SEND_BACKOFF_SECONDS: float = 1.0
    # The most a throttled send waits in all before it fails (and the conversation goes to a
    # human); keep it well under JOBS_JOB_TIMEOUT_SECONDS.
    JOBS_THROTTLE_SPAN_SECONDS: float = 120.0
    JOBS_RETRY_BACKOFF_SECONDS: float = 2.0
    JOBS_SESSION_IDLE_HOURS: float = 24.0
    JOBS_TYPING_TTL_SECONDS: float = 30.0
    # The worker's Prometheus /metrics port, on every interface (0: none; jobs/metrics.py).
    JOBS_METRICS_PORT: int = 9400

    # The LLM engine (claude-sales-v1, the `llm` extra); unset values take the engine's defaults
    ANTHROPIC_API_KEY: SecretStr | None = None
    BRIDGE_LLM_MODEL: str | None = None
    BRIDGE_LLM_MAX_TOKENS: int | None = None
    BRIDGE_LLM_TIMEOUT_SECONDS: float | None = None
    BRIDGE_LLM_BASE_URL: str | None = None

    @field_validator("*", mode="before")
    @classmethod
    def _blank_is_unset(cls, value: Any) -> Any:
        # `env_ignore_empty` covers `KEY=` in the environment only; a blank or whitespace-only
        # value, from anywhere, must never become a key anything is signed or compared with.
        text = value.get_secret_value() if isinstance(value, SecretStr) else value
        if isinstance(text, str) and not text.strip():
            raise PydanticUseDefault()
        return value

    def check_webhook_secrets(self) -> None:
        """Refuse to serve webhooks nobody can authenticate, unless told this is a dev box."""
        if self.WHATSAPP_APP_SECRET is None and self.WHATSAPP_360DIALOG_WEBHOOK_SECRET is None:
            if not self.BRIDGE_INSECURE_DEV:
                raise ConfigError(
                    "WHATSAPP_APP_SECRET (or WHATSAPP_360DIALOG_WEBHOOK_SECRET) is not set "
                    "(a blank value counts as unset); set it, or BRIDGE_INSECURE_DEV=true to "
                    "accept unsigned webhooks locally"
                )


class ConfigError(Exception):
    """The configuration cannot work; the message says which variable to set."""
