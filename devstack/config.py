"""Settings of the local stand-ins; the defaults mirror `supabase start`."""

from __future__ import annotations

from dataclasses import dataclass, field

LOCAL_JWT_SECRET = "super-secret-jwt-token-with-at-least-32-characters-long"


@dataclass(frozen=True)
class DevstackConfig:
    database_url: str
    host: str = "127.0.0.1"
    port: int = 54321
    jwt_secret: str = LOCAL_JWT_SECRET
    # PostgREST's db-anon-role and db-schemas, as the Supabase CLI configures them
    anon_role: str = "anon"
    schemas: tuple[str, ...] = ("public", "graphql_public")
    extra_search_path: tuple[str, ...] = ("public", "extensions")
    # PostgREST's db-pool default
    pool_max_size: int = 10
    # Where the WhatsApp stand-in posts status webhooks (None: it does not)
    whatsapp_webhook_url: str | None = None
    whatsapp_app_secret: str | None = None
    extra: dict[str, str] = field(default_factory=dict)
