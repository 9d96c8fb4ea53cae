"""Postgres Changes through the inbox's own client, supabase-js (realtime-js, vsn 2.0.0), signed
in as workspace members."""

from __future__ import annotations

import asyncpg

from tests.devstack.test_realtime_postgres_changes import Inbox, insert_customer_message, make_inbox
from tests.factories.tokens import user_token
from tests.fixtures.devstack import ANON_KEY
from tests.js.node import Node, assert_silent, finish, needs_node, read_json, read_line

pytestmark = needs_node


async def test_supabase_js_gets_a_members_inserts_and_updates_and_a_stranger_nothing(
    devstack_url: str, db: asyncpg.Pool, node: Node
) -> None:
    inbox: Inbox = await make_inbox(db)
    conversation = str(inbox.conversation_id)
    member = await node(
        "postgres_changes_subscriber.mjs",
        devstack_url,
        ANON_KEY,
        user_token(inbox.member),
        conversation,
    )
    stranger = await node(
        "postgres_changes_subscriber.mjs",
        devstack_url,
        ANON_KEY,
        user_token(inbox.stranger),
        conversation,
    )
    assert await read_line(member) == "SUBSCRIBED"
    assert await read_line(stranger) == "SUBSCRIBED"

    message_id = await insert_customer_message(db, inbox, "hola, cuánto cuesta?")
    inserted = await read_json(member)
    assert inserted["binding"] == "INSERT"
    assert inserted["eventType"] == "INSERT"
    assert (inserted["schema"], inserted["table"], inserted["errors"]) == (
        "public",
        "messages",
        None,
    )
    assert inserted["new"]["id"] == str(message_id)
    assert inserted["new"]["conversation_id"] == conversation
    assert inserted["new"]["content"] == {"body": "hola, cuánto cuesta?"}
    assert inserted["old"] == {}

    await db.execute("update public.messages set status = 'read' where id = $1", message_id)
    updated = await read_json(member)
    assert (updated["binding"], updated["eventType"]) == ("UPDATE", "UPDATE")
    assert updated["new"]["status"] == "read"
    assert updated["old"]["status"] is None  # REPLICA IDENTITY FULL: the old row too
    assert updated["commit_timestamp"].endswith("Z")

    await assert_silent(member, within=0.5)
    await assert_silent(stranger, within=2.0)
    for proc in (member, stranger):
        await finish(proc)
