"""`python -m devstack --port 54321 --database-url URL`: the local Supabase + WhatsApp stand-ins."""

from __future__ import annotations

import argparse
import asyncio
import sys

import asyncpg
import uvicorn

from devstack.app import create_app
from devstack.config import LOCAL_JWT_SECRET, DevstackConfig


def _parse(argv: list[str] | None) -> DevstackConfig:
    parser = argparse.ArgumentParser(prog="python -m devstack", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=54321)
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--jwt-secret", default=LOCAL_JWT_SECRET)
    parser.add_argument(
        "--db-pool",
        type=int,
        default=DevstackConfig.pool_max_size,
        help="most connections the PostgREST stand-in opens (PostgREST's db-pool, PGRST_DB_POOL)",
    )
    parser.add_argument(
        "--whatsapp-webhook-url",
        default=None,
        help="post signed status webhooks (sent, delivered, read) here",
    )
    parser.add_argument(
        "--whatsapp-app-secret", default=None, help="app secret to sign those webhooks with"
    )
    args = parser.parse_args(argv)
    return DevstackConfig(
        database_url=args.database_url,
        host=args.host,
        port=args.port,
        jwt_secret=args.jwt_secret,
        pool_max_size=args.db_pool,
        whatsapp_webhook_url=args.whatsapp_webhook_url,
        whatsapp_app_secret=args.whatsapp_app_secret,
    )


async def _check_database(url: str) -> str | None:
    try:
        conn = await asyncpg.connect(url, timeout=5)
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        return str(exc) or type(exc).__name__
    await conn.close()
    return None


def main(argv: list[str] | None = None) -> int:
    config = _parse(argv)
    problem = asyncio.run(_check_database(config.database_url))
    if problem is not None:
        sys.stderr.write(
            f"devstack: cannot reach the database at {config.database_url}: {problem}\n"
        )
        return 2
    uvicorn.run(
        create_app(config),
        host=config.host,
        port=config.port,
        log_level="warning",
        ws_max_size=4 * 1024 * 1024,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
