"""The `bridge` command: `bridge serve` runs the webhook API, `bridge db apply` the schema."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence

from bridge import migrations


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bridge", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the webhook API with uvicorn")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--workers", type=int, default=1, help="uvicorn worker processes")
    serve.add_argument(
        "--limit-concurrency",
        type=int,
        default=200,
        help="requests in flight per worker (open idle connections do not count) before "
        "answering 503 (the provider retries)",
    )
    serve.add_argument(
        "--access-log",
        action="store_true",
        help="also log every request (uvicorn's access log, query values redacted)",
    )

    db = commands.add_parser("db", help="database schema").add_subparsers(
        dest="db_command", required=True
    )
    db_apply = db.add_parser("apply", help="apply bootstrap (when needed) and migrations")
    db_apply.add_argument("--database-url", required=True)
    db_apply.add_argument("--seed", action="store_true", help="also load supabase/seed.sql")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "db":
        try:
            report = asyncio.run(migrations.apply(args.database_url, seed=args.seed))
        except migrations.MigrationHistoryMismatch as exc:
            sys.stderr.write(f"bridge db apply: {exc}\n")  # what differs, and how to reset
            return 1
        applied = ", ".join(report.applied) or "none (up to date)"
        sys.stdout.write(
            f"bootstrap: {'applied' if report.bootstrapped else 'present'}; migrations: {applied}"
            f"{'; seed loaded' if report.seeded else ''}\n"
        )
        return 0
    from bridge.api.server import serve

    return serve(
        host=args.host,
        port=args.port,
        workers=args.workers,
        limit_concurrency=args.limit_concurrency,
        access_log=args.access_log,
    )


if __name__ == "__main__":
    sys.exit(main())
