"""The frontend's own client, supabase-js on node, working the inbox against the stand-ins: a
seeded member signs in with the demo password, reads and updates their workspace's
conversation, asks who they are and refreshes the session; a member of the other workspace
gets nothing back and changes nothing."""

from __future__ import annotations

from typing import Any

import asyncpg

from tests.devstack.inbox_data import (
    ANA,
    ANA_ID,
    DAVE,
    DEMO_PASSWORD,
    DEMO_STORE,
    make_conversation,
)
from tests.fixtures.devstack import ANON_KEY
from tests.js.node import Node, finish, needs_node, read_json

pytestmark = needs_node

_STEPS = (
    "sign_in",
    "messages",
    "embedded",
    "update",
    "get_user",
    "refresh",
    "read_after_refresh",
    "sign_out",
)


async def _run(
    node: Node, url: str, email: str, password: str, conversation: str
) -> dict[str, dict[str, Any]]:
    proc = await node("member_inbox.mjs", url, ANON_KEY, email, password, conversation)
    steps: dict[str, dict[str, Any]] = {}
    for expected in _STEPS:
        line = await read_json(proc, within=20)
        assert line["step"] == expected, line
        steps[expected] = line
        if expected == "sign_in" and line["error"] is not None:
            break
    await finish(proc)
    return steps


async def test_a_member_works_their_inbox_through_supabase_js(
    devstack_url: str, node: Node, db: asyncpg.Pool
) -> None:
    conversation = await make_conversation(db, DEMO_STORE, messages=2)
    steps = await _run(node, devstack_url, ANA, DEMO_PASSWORD, str(conversation.id))
    assert all(step["error"] is None for step in steps.values()), steps
    session_id = steps["sign_in"]["data"].pop("session_id")
    assert steps["sign_in"]["data"] == {
        "user_id": str(ANA_ID),
        "email": ANA,
        "token_type": "bearer",
        "expires_in": 3600,
    }
    assert steps["messages"]["data"] == list(conversation.wamids)
    assert steps["embedded"]["data"] == {
        "wamid": conversation.wamids[0],
        "conversations": {
            "id": str(conversation.id),
            "contacts": {"name": conversation.contact_name},
        },
    }
    assert steps["update"]["data"] == [
        {"id": str(conversation.id), "is_read": True, "unread_count": 0}
    ]
    assert steps["get_user"]["data"] == {"id": str(ANA_ID), "email": ANA}
    assert steps["refresh"]["data"]["user_id"] == str(ANA_ID)
    assert steps["refresh"]["data"]["new_refresh_token"] is True
    assert steps["read_after_refresh"]["data"] == [{"id": str(conversation.id)}]
    assert await db.fetchval(
        "select is_read from public.conversations where id = $1", conversation.id
    )
    # signOut ended the session, and its refresh tokens with it
    assert (
        await db.fetchval("select count(*) from auth.sessions where id = $1::uuid", session_id) == 0
    )
    assert (
        await db.fetchval(
            "select count(*) from auth.refresh_tokens where session_id = $1::uuid", session_id
        )
        == 0
    )


async def test_a_member_of_the_other_workspace_gets_nothing_and_changes_nothing(
    devstack_url: str, node: Node, db: asyncpg.Pool
) -> None:
    conversation = await make_conversation(db, DEMO_STORE, messages=2)
    steps = await _run(node, devstack_url, DAVE, DEMO_PASSWORD, str(conversation.id))
    assert steps["sign_in"]["error"] is None
    assert steps["messages"] == {"step": "messages", "data": [], "error": None}
    assert steps["embedded"]["data"] is None
    assert steps["embedded"]["error"] is None
    assert steps["update"] == {"step": "update", "data": [], "error": None}
    assert steps["read_after_refresh"]["data"] == []
    assert (
        await db.fetchval("select is_read from public.conversations where id = $1", conversation.id)
        is False
    )


async def test_a_wrong_password_is_auths_invalid_credentials_in_supabase_js(
    devstack_url: str, node: Node
) -> None:
    steps = await _run(node, devstack_url, ANA, "not the password", "-")
    assert steps["sign_in"]["data"] is None
    assert steps["sign_in"]["error"] == {
        "code": "invalid_credentials",
        "message": "Invalid login credentials",
        "status": 400,
    }
