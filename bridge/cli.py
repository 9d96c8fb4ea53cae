"""The `bridge` command: `bridge serve` runs the webhook API, `bridge db apply` the schema,
`bridge replay` processes stored webhook events again, `bridge doctor` checks the settings and
connections (docs/operations.md), `bridge demo` plays a customer against the local stack."""

from __future__ import annotations

import argparse
import asyncio
import sys
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from bridge import migrations

if TYPE_CHECKING:
    from bridge.doctor_channels import EndpointRule
    from bridge.doctor_database import ChannelRow
    from bridge.settings import Settings


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

    replay = commands.add_parser(
        "replay",
        help="process stored webhook events again (after a fix); failed ones by default",
        description="Process stored webhook events again through the webhook's normaliser and "
        "intake, one transaction each; messages already stored are not stored twice. Exits 1 "
        "when any event still fails.",
    )
    replay.add_argument(
        "--id",
        dest="ids",
        action="append",
        type=_event_id,
        default=[],
        metavar="EVENT_ID",
        help="an event's id (repeatable); replayed whatever its state",
    )
    replay.add_argument("--since", type=_timestamp, help="events created at or after (ISO 8601)")
    replay.add_argument("--until", type=_timestamp, help="events created before (ISO 8601)")
    state = replay.add_mutually_exclusive_group()
    state.add_argument(
        "--failed",
        dest="all",
        action="store_false",
        default=False,
        help="only failed events (the default)",
    )
    state.add_argument("--all", dest="all", action="store_true", help="events in any state")
    replay.add_argument(
        "--dry-run", action="store_true", help="say what each replay would do, change nothing"
    )
    replay.add_argument("--limit", type=int, default=1000, help="events per run (default 1000)")
    replay.add_argument("--database-url", help="a direct connection (default: DATABASE_URL)")

    check = commands.add_parser(
        "doctor",
        help="check every setting and connection; say what is wrong and how to fix it",
        description="Check the settings, Supabase, the database, Redis, the webhook secrets and "
        "each WhatsApp channel, one line each. Exits 1 on any problem (warnings do not count).",
    )
    check.add_argument("--json", action="store_true", help="one JSON document instead of lines")
    check.add_argument(
        "--local",
        action="store_true",
        help="a development machine: BRIDGE_INSECURE_DEV=true is no warning",
    )
    check.add_argument("--timeout", type=float, default=5.0, help="seconds per network check")

    demo = commands.add_parser(
        "demo",
        help="play a conversation as a new customer against the running stack (make dev)",
        description="Play one conversation as a new customer through signed webhooks (a "
        "greeting, a price question, a burst, shipping data, a request for a human) and show "
        "live what the inbox sees: stored messages, typing, replies with their delays, delivery "
        "statuses and the handoff. Exits 1 when a step was not observed in time.",
    )
    demo.add_argument("--bridge-url", default="http://127.0.0.1:8000", help="the webhook API")
    demo.add_argument(
        "--phone-number-id", default="1000000000000001", help="the business number written to"
    )
    demo.add_argument("--timeout", type=_seconds, default=30.0, help="seconds per step (30)")
    demo.add_argument(
        "--plain",
        action="store_true",
        help="plain lines instead of the live view (the default when stdout is not a terminal)",
    )
    return parser


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value > 0:
        raise argparse.ArgumentTypeError(f"not a positive number of seconds: {text!r}")
    return value


def _event_id(text: str) -> str:
    try:
        return str(uuid.UUID(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an event id (a UUID): {text!r}") from None


def _timestamp(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not an ISO 8601 time: {text!r} (e.g. 2026-12-01T08:00:00Z)"
        ) from None
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


async def _replay(args: argparse.Namespace) -> int:
    import asyncpg

    from bridge.api import replay
    from bridge.queue import Enqueuer
    from bridge.settings import Settings

    settings = Settings()
    selection = replay.Selection(
        ids=args.ids,
        since=args.since,
        until=args.until,
        failed_only=not args.all,
        limit=args.limit,
    )
    out = sys.stdout
    conn = await asyncpg.connect(args.database_url or settings.DATABASE_URL)
    try:
        events = await replay.select_events(conn, selection)
        missing = set(args.ids) - {e.id for e in events}
        for event_id in sorted(missing):
            out.write(f"{event_id} no such event\n")
        left = len(events) > args.limit
        outcomes = []
        for event in events[: args.limit]:
            outcome = await replay.replay_event(conn, event, dry_run=args.dry_run)
            outcomes.append(outcome)
            out.write(outcome.describe(dry_run=args.dry_run) + "\n")
    finally:
        await conn.close()
    still_failing = sum(o.failed for o in outcomes)
    new_inbound = sum(len(o.result.new_inbound) for o in outcomes if o.result is not None)
    if new_inbound and not args.dry_run:
        enqueuer = Enqueuer(settings.REDIS_URL, settings.ARQ_QUEUE_NAME)
        try:
            queued = await replay.ring(enqueuer, outcomes)
            out.write(f"rang the worker for {queued} new inbound message(s)\n")
        except Exception as exc:  # the messages are stored: the worker's sweeper finds them
            out.write(
                f"could not ring the worker ({type(exc).__name__}: {exc}); its sweeper "
                f"will pick up the {new_inbound} new inbound message(s)\n"
            )
        finally:
            await enqueuer.close()
    out.write(
        f"{'dry run: ' if args.dry_run else ''}{len(outcomes)} event(s), "
        f"{len(outcomes) - still_failing} ok, {still_failing} failing"
        + (f"; more match, run again (--limit {args.limit})" if left else "")
        + "\n"
    )
    return 1 if still_failing or missing else 0


def _send_rule(settings: Settings) -> EndpointRule:
    """The worker's own rules for a channel, for `bridge doctor`: which credential it sends with
    (`jobs.turn.channel_for`) and where it may send (`SendPolicy`)."""
    from bridge.doctor_channels import Endpoint, EndpointRefused
    from jobs import turn, whatsapp_api
    from jobs.turn_store import Conversation

    policy = whatsapp_api.SendPolicy.from_settings(settings)  # ValueError: a bad setting

    def endpoint(row: ChannelRow) -> Endpoint:
        conversation = Conversation(
            conversation_id=uuid.UUID(int=0),
            workspace_id=uuid.UUID(int=0),
            phone=None,
            bsuid=None,
            profile_name=None,
            phone_number_id=row.phone_number_id,
            provider=row.provider,
            api_base_url=row.api_base_url,
            access_token=row.access_token,
            api_key=row.api_key,
            config={},
        )
        channel = turn.channel_for(conversation, settings)
        try:
            url, headers = policy.request(channel)
        except whatsapp_api.Refused as exc:
            raise EndpointRefused(str(exc).removeprefix("refused: ")) from None
        return Endpoint(url.removesuffix("/messages"), headers, channel.credential)

    return endpoint


async def _doctor(args: argparse.Namespace) -> int:
    from bridge import doctor

    settings, checks = doctor.load_settings()
    if settings is not None:
        checks = await doctor.run(settings, _send_rule, local=args.local, seconds=args.timeout)
    sys.stdout.write(doctor.render_json(checks) if args.json else doctor.render(checks))
    return 1 if any(c.status == "problem" for c in checks) else 0


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
    if args.command == "replay":
        return asyncio.run(_replay(args))
    if args.command == "doctor":
        return asyncio.run(_doctor(args))
    if args.command == "demo":
        from bridge.demo import run

        return run.main(
            run.Options(
                bridge_url=args.bridge_url,
                phone_number_id=args.phone_number_id,
                timeout=args.timeout,
                plain=args.plain or not sys.stdout.isatty(),
            )
        )
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
