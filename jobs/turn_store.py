"""The SQL of an agent turn: what it reads, and the one transaction that commits a decision.

Every function takes the lock holder's connection; every write runs in a transaction that first
asserts the turn fence, so a worker that lost its lock cannot change anything.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeAlias

import asyncpg

from bridge.engine.protocol import Contact, InboundMessage, Session, TurnResult
from jobs.lock import ConversationLock

if TYPE_CHECKING:
    from asyncpg.pool import PoolConnectionProxy

    Conn: TypeAlias = PoolConnectionProxy[asyncpg.Record]
else:
    Conn = object  # only a type: asyncpg's proxy is not subscriptable at run time


@dataclass(frozen=True)
class ConversationContext:
    conversation_id: uuid.UUID
    workspace_id: uuid.UUID
    contact_id: uuid.UUID | None
    phone: str | None
    bsuid: str | None
    profile_name: str | None
    phone_number_id: str
    provider: str
    api_base_url: str | None
    access_token: str | None
    api_key: str | None
    config: dict[str, Any]

    @property
    def agent_id(self) -> str:
        return str(self.config.get("conversational_agent_id") or "somnio-sales-v1")

    @property
    def response_speed(self) -> float:
        return float(self.config.get("response_speed") or 0)


async def load_context(conn: Conn, conversation_id: uuid.UUID) -> ConversationContext | None:
    row = await conn.fetchrow(
        """
        select c.id, c.workspace_id, c.contact_id, c.phone, c.bsuid, c.profile_name,
               c.phone_number_id, coalesce(ch.provider, 'meta') as provider, ch.api_base_url,
               cr.access_token, cr.api_key, to_jsonb(cfg) as config
          from public.conversations c
          left join public.whatsapp_channels ch on ch.phone_number_id = c.phone_number_id
          left join private.whatsapp_channel_credentials cr on cr.channel_id = ch.id
          left join public.workspace_agent_config cfg on cfg.workspace_id = c.workspace_id
         where c.id = $1
        """,
        conversation_id,
    )
    if row is None:
        return None
    config = json.loads(row["config"]) if row["config"] else {}
    return ConversationContext(
        conversation_id=row["id"],
        workspace_id=row["workspace_id"],
        contact_id=row["contact_id"],
        phone=row["phone"],
        bsuid=row["bsuid"],
        profile_name=row["profile_name"],
        phone_number_id=row["phone_number_id"],
        provider=row["provider"],
        api_base_url=row["api_base_url"],
        access_token=row["access_token"],
        api_key=row["api_key"],
        config=config,
    )


async def is_agent_enabled(conn: Conn, conversation_id: uuid.UUID) -> bool:
    return bool(await conn.fetchval("select private.is_agent_enabled($1)", conversation_id))


async def unprocessed_inbound(conn: Conn, conversation_id: uuid.UUID) -> list[InboundMessage]:
    rows = await conn.fetch(
        """
        select id, wamid, type, content, timestamp from public.messages
         where conversation_id = $1 and direction = 'inbound' and not processed_by_agent
         order by timestamp, created_at, id
        """,
        conversation_id,
    )
    messages = []
    for r in rows:
        content = json.loads(r["content"])
        body = content.get("body")
        text = body if isinstance(body, str) and not body.startswith("[") else None
        if r["type"] in ("text", "interactive", "button") or text:
            text = body if isinstance(body, str) else None
        messages.append(
            InboundMessage(
                message_id=r["id"],
                wamid=r["wamid"],
                type=r["type"],
                text=text,
                content=content,
                timestamp=r["timestamp"],
            )
        )
    return messages


async def newest_inbound_age_ms(conn: Conn, conversation_id: uuid.UUID) -> float | None:
    """Milliseconds since the newest unprocessed inbound message was stored (reply window)."""
    value = await conn.fetchval(
        """
        select extract(epoch from now() - max(created_at)) * 1000 from public.messages
         where conversation_id = $1 and direction = 'inbound' and not processed_by_agent
        """,
        conversation_id,
    )
    return None if value is None else float(value)


async def has_unprocessed_inbound(conn: Conn, conversation_id: uuid.UUID) -> bool:
    return bool(
        await conn.fetchval(
            "select exists (select 1 from public.messages where conversation_id = $1"
            " and direction = 'inbound' and not processed_by_agent)",
            conversation_id,
        )
    )


async def mark_processed(lock: ConversationLock, message_ids: list[uuid.UUID]) -> None:
    """The agent is off for this conversation: the messages are handled, nothing else."""
    async with lock.conn.transaction():
        await lock.assert_fence()
        await lock.conn.execute(
            "update public.messages set processed_by_agent = true where id = any($1)", message_ids
        )


async def ensure_contact(lock: ConversationLock, ctx: ConversationContext) -> Contact:
    """The conversation's contact, linking an existing one or creating a minimal one (profile
    name, else the phone). A concurrent creator wins the unique key; its row is used."""
    conn = lock.conn
    async with conn.transaction():
        await lock.assert_fence()
        row = (
            await conn.fetchrow(
                "select id, name, phone from public.contacts where id = $1", ctx.contact_id
            )
            if ctx.contact_id
            else None
        )
        if row is None:
            row = await conn.fetchrow(
                """
                select id, name, phone from public.contacts
                 where workspace_id = $1
                   and (($2::text is not null and bsuid = $2) or ($3::text is not null and phone = $3))
                 order by (bsuid is not distinct from $2) desc limit 1
                """,
                ctx.workspace_id,
                ctx.bsuid,
                ctx.phone,
            )
        if row is None:
            name = ctx.profile_name or ctx.phone or ctx.bsuid or "WhatsApp"
            try:
                async with conn.transaction():
                    row = await conn.fetchrow(
                        "insert into public.contacts (workspace_id, name, phone, bsuid)"
                        " values ($1, $2, $3, $4) returning id, name, phone",
                        ctx.workspace_id,
                        name,
                        ctx.phone,
                        ctx.bsuid,
                    )
            except asyncpg.UniqueViolationError:
                row = await conn.fetchrow(
                    """
                    select id, name, phone from public.contacts
                     where workspace_id = $1
                       and (($2::text is not null and bsuid = $2) or ($3::text is not null and phone = $3))
                     order by (bsuid is not distinct from $2) desc limit 1
                    """,
                    ctx.workspace_id,
                    ctx.bsuid,
                    ctx.phone,
                )
        assert row is not None
        await conn.execute(
            "update public.conversations set contact_id = $2 where id = $1"
            " and contact_id is distinct from $2",
            ctx.conversation_id,
            row["id"],
        )
    return Contact(id=row["id"], name=row["name"], phone=row["phone"])


async def open_session(
    lock: ConversationLock, ctx: ConversationContext, contact_id: uuid.UUID
) -> Session:
    """The active session of (conversation, agent), or a fresh one: after a handoff or a close a
    new session starts, so re-enabling the bot never finds it mute."""
    conn = lock.conn
    select = """
        select id, agent_id, current_mode, state, version from public.agent_sessions
         where conversation_id = $1 and agent_id = $2 and status = 'active'
    """
    async with conn.transaction():
        await lock.assert_fence()
        row = await conn.fetchrow(select, ctx.conversation_id, ctx.agent_id)
        is_new = row is None
        if row is None:
            row = await conn.fetchrow(
                """
                insert into public.agent_sessions (workspace_id, agent_id, conversation_id, contact_id)
                values ($1, $2, $3, $4)
                returning id, agent_id, current_mode, state, version
                """,
                ctx.workspace_id,
                ctx.agent_id,
                ctx.conversation_id,
                contact_id,
            )
    assert row is not None
    return Session(
        id=row["id"],
        agent_id=row["agent_id"],
        mode=row["current_mode"],
        state=json.loads(row["state"]),
        version=row["version"],
        is_new=is_new,
    )


async def commit_decision(
    lock: ConversationLock,
    session: Session,
    messages: list[InboundMessage],
    result: TurnResult,
) -> list[uuid.UUID]:
    """In one transaction: the user and assistant turns, the replies as pending outbox rows
    (sent_by_agent), the session's new mode/state, and the inbound messages marked processed.
    After this commit a retry never decides again for these messages; it only resumes sending."""
    conn = lock.conn
    async with conn.transaction():
        await lock.assert_fence()
        updated = await conn.fetchval(
            """
            update public.agent_sessions
               set current_mode = $3, state = $4::jsonb, version = version + 1,
                   last_activity_at = now()
             where id = $1 and version = $2 and status = 'active'
            returning id
            """,
            session.id,
            session.version,
            result.mode,
            json.dumps(result.state),
        )
        if updated is None:
            raise SessionConflict(f"session {session.id} changed under the turn")
        next_number = await conn.fetchval(
            "select coalesce(max(turn_number), 0) + 1 from public.agent_turns where session_id = $1",
            session.id,
        )
        user_text = "\n".join(m.text or f"[{m.type}]" for m in messages)
        await conn.execute(
            """
            insert into public.agent_turns
              (session_id, turn_number, role, content, intent_detected, confidence, tokens_used)
            values ($1, $2, 'user', $3, $4, $5, 0)
            """,
            session.id,
            next_number,
            user_text,
            result.intent,
            result.confidence,
        )
        assistant_turn = await conn.fetchval(
            """
            insert into public.agent_turns
              (session_id, turn_number, role, content, intent_detected, confidence, tokens_used,
               tools_called)
            values ($1, $2, 'assistant', $3, $4, $5, $6, $7::jsonb)
            returning id
            """,
            session.id,
            next_number + 1,
            "\n".join(r.text for r in result.replies),
            result.intent,
            result.confidence,
            result.tokens_used,
            json.dumps([{"handoff": result.handoff_reason}] if result.handoff else []),
        )
        outbox_ids: list[uuid.UUID] = []
        for position, reply in enumerate(result.replies):
            outbox_ids.append(
                await conn.fetchval(
                    """
                insert into public.messages
                  (workspace_id, conversation_id, direction, type, content, status,
                   sent_by_agent, agent_turn_id, outbox_kind, outbox_position, delay_ms,
                   template_name)
                select workspace_id, id, 'outbound', 'text', jsonb_build_object('body', $2::text),
                       'pending', true, $3, 'reply', $4, $5, $6
                  from public.conversations where id = $1
                returning id
                """,
                    lock.conversation_id,
                    reply.text,
                    assistant_turn,
                    position,
                    reply.delay_ms,
                    reply.template_id,
                )
            )
        await conn.execute(
            "update public.messages set processed_by_agent = true, agent_turn_id = $2"
            " where id = any($1)",
            [m.message_id for m in messages],
            assistant_turn,
        )
    return outbox_ids


class SessionConflict(Exception):
    """The session's version moved under the turn (it cannot while the lock is held, unless a
    human edited it): the turn is retried and decides again from the fresh state."""
