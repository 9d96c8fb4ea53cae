"""Postgres Changes over the raw Phoenix protocol: what is delivered, to whom, in which shape.

The shape is Realtime's (`lib/extensions/postgres_cdc_rls`, `realtime.apply_rls`): event
`postgres_changes`, `ref` and `join_ref` null, payload `{"data": {...}, "ids": [...]}` where
`data` has `columns`, `commit_timestamp`, `errors`, `schema`, `table`, `type` and `record`
(INSERT, UPDATE) / `old_record` (UPDATE, DELETE), and `ids` are the channel's matching binding
ids as the join reply gave them.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import asyncpg
import jwt
import pytest

from devstack import workspaces
from devstack.config import LOCAL_JWT_SECRET
from devstack.realtime.pg_params import Filter, Params, ParamsError, parse
from tests.devstack.phoenix_client import Frame, PhoenixClient
from tests.factories.tokens import user_token

TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
DATA_KEYS = {
    "INSERT": ["columns", "commit_timestamp", "errors", "record", "schema", "table", "type"],
    "UPDATE": [
        "columns", "commit_timestamp", "errors", "old_record", "record", "schema", "table", "type",
    ],
    "DELETE": ["columns", "commit_timestamp", "errors", "old_record", "schema", "table", "type"],
}  # fmt: skip


@dataclass(frozen=True)
class Inbox:
    """A conversation of a workspace, one of its members, and a member of another workspace."""

    workspace_id: uuid.UUID
    conversation_id: uuid.UUID
    member: uuid.UUID
    stranger: uuid.UUID


async def add_conversation(conn: Any, workspace_id: uuid.UUID) -> uuid.UUID:
    conversation_id: uuid.UUID = await conn.fetchval(
        "insert into public.conversations (workspace_id, phone, phone_number_id)"
        " values ($1, $2, $3) returning id",
        workspace_id,
        "57" + str(uuid.uuid4().int)[:10],
        workspaces.random_phone_number_id(),
    )
    return conversation_id


async def make_inbox(db: asyncpg.Pool) -> Inbox:
    async with db.acquire() as conn:
        ours = await workspaces.create_workspace(
            conn, "Changes", members=[workspaces.Member("agent")]
        )
        theirs = await workspaces.create_workspace(
            conn, "Elsewhere", members=[workspaces.Member("agent")]
        )
        conversation_id = await add_conversation(conn, ours.id)
    return Inbox(ours.id, conversation_id, ours.members[0], theirs.members[0])


@pytest.fixture
async def inbox(db: asyncpg.Pool) -> Inbox:
    return await make_inbox(db)


async def insert_customer_message(db: asyncpg.Pool, inbox: Inbox, body: str = "hola") -> uuid.UUID:
    """A new customer message as the intake stores it."""
    message_id: uuid.UUID = await db.fetchval(
        "insert into public.messages (workspace_id, conversation_id, wamid, direction, type,"
        " content, processed_by_agent) values ($1, $2, $3, 'inbound', 'text', $4::jsonb, false)"
        " returning id",
        inbox.workspace_id,
        inbox.conversation_id,
        f"wamid.{uuid.uuid4().hex}",
        json.dumps({"body": body}),
    )
    return message_id


def binding(conversation_id: uuid.UUID, event: str = "*", **extra: Any) -> dict[str, Any]:
    return {
        "event": event,
        "schema": "public",
        "table": "messages",
        "filter": f"conversation_id=eq.{conversation_id}",
        **extra,
    }


async def subscribe(
    client: PhoenixClient, topic: str, bindings: list[dict[str, Any]], token: str
) -> tuple[str, list[int], Frame]:
    """Join with postgres_changes bindings; returns (join_ref, binding ids, system push)."""
    join_ref, reply = await client.join(
        topic, access_token=token, extra_config={"postgres_changes": bindings}
    )
    assert reply.payload["status"] == "ok"
    echoed = reply.payload["response"]["postgres_changes"]
    assert [{k: v for k, v in b.items() if k != "id"} for b in echoed] == bindings
    system = await client.next_event("system")
    return join_ref, [b["id"] for b in echoed], system


@pytest.fixture
async def clients(devstack_url: str) -> AsyncIterator[list[PhoenixClient]]:
    opened: list[PhoenixClient] = []
    yield opened
    for client in opened:
        await client.close()


async def connect(
    devstack_url: str, opened: list[PhoenixClient], vsn: str = "1.0.0"
) -> PhoenixClient:
    client = await PhoenixClient.connect(devstack_url, vsn=vsn)
    opened.append(client)
    return client


async def message_columns(db: asyncpg.Pool) -> list[dict[str, str]]:
    rows = await db.fetch(
        "select a.attname, t.typname from pg_attribute a join pg_type t on t.oid = a.atttypid"
        " where a.attrelid = 'public.messages'::regclass and a.attnum > 0"
        " and not a.attisdropped order by a.attnum"
    )
    return [{"name": r["attname"], "type": r["typname"]} for r in rows]


@pytest.mark.parametrize("vsn", ["1.0.0", "2.0.0"])
async def test_insert_update_delete_reach_a_member_in_realtimes_shape(
    devstack_url: str, db: asyncpg.Pool, inbox: Inbox, clients: list[PhoenixClient], vsn: str
) -> None:
    client = await connect(devstack_url, clients, vsn)
    topic = f"inbox:{uuid.uuid4().hex[:8]}"
    _, ids, system = await subscribe(
        client, topic, [binding(inbox.conversation_id)], user_token(inbox.member)
    )
    assert system.payload == {
        "extension": "postgres_changes",
        "status": "ok",
        "message": "Subscribed to PostgreSQL",
        "channel": topic,
    }
    columns = await message_columns(db)

    message_id = await insert_customer_message(db, inbox, "cuánto cuesta?")
    frame = await client.next_event("postgres_changes")
    assert (frame.topic, frame.ref, frame.join_ref) == (f"realtime:{topic}", None, None)
    if vsn == "1.0.0":
        assert frame.keys == ("topic", "event", "payload", "ref")
    assert list(frame.payload) == ["data", "ids"]
    assert frame.payload["ids"] == ids
    data = frame.payload["data"]
    assert list(data) == DATA_KEYS["INSERT"]
    assert TIMESTAMP.match(data["commit_timestamp"])
    assert {k: data[k] for k in ("schema", "table", "type", "errors", "columns")} == {
        "schema": "public",
        "table": "messages",
        "type": "INSERT",
        "errors": None,
        "columns": columns,
    }
    row = json.loads(
        await db.fetchval(
            "select to_jsonb(m)::text from public.messages m where id = $1", message_id
        )
    )
    assert data["record"] == row
    assert data["record"]["content"] == {"body": "cuánto cuesta?"}
    assert data["record"]["processed_by_agent"] is False

    await db.execute("update public.messages set status = 'read' where id = $1", message_id)
    data = (await client.next_event("postgres_changes")).payload["data"]
    assert list(data) == DATA_KEYS["UPDATE"]
    assert data["type"] == "UPDATE"
    assert data["record"] == {**row, "status": "read"}
    # messages has REPLICA IDENTITY FULL: the whole old row
    assert data["old_record"] == row

    await db.execute("delete from public.messages where id = $1", message_id)
    data = (await client.next_event("postgres_changes")).payload["data"]
    assert list(data) == DATA_KEYS["DELETE"]
    # RLS guards the table, so a delete carries the primary key only
    assert data["old_record"] == {"id": str(message_id)}
    await client.nothing()


async def test_a_member_of_another_workspace_receives_nothing_but_deletes(
    devstack_url: str, db: asyncpg.Pool, inbox: Inbox, clients: list[PhoenixClient]
) -> None:
    member = await connect(devstack_url, clients)
    stranger = await connect(devstack_url, clients)
    topic = f"inbox:{uuid.uuid4().hex[:8]}"
    await subscribe(member, topic, [binding(inbox.conversation_id)], user_token(inbox.member))
    await subscribe(stranger, topic, [binding(inbox.conversation_id)], user_token(inbox.stranger))

    message_id = await insert_customer_message(db, inbox)
    await db.execute("update public.messages set status = 'read' where id = $1", message_id)
    assert (await member.next_event("postgres_changes")).payload["data"]["type"] == "INSERT"
    assert (await member.next_event("postgres_changes")).payload["data"]["type"] == "UPDATE"
    await stranger.nothing(1.0)

    # Realtime cannot check RLS on a deleted row: every matching binding gets it, key only.
    await db.execute("delete from public.messages where id = $1", message_id)
    for client in (member, stranger):
        data = (await client.next_event("postgres_changes")).payload["data"]
        assert (data["type"], data["old_record"]) == ("DELETE", {"id": str(message_id)})


async def test_filters_events_and_ids_pick_the_bindings(
    devstack_url: str, db: asyncpg.Pool, inbox: Inbox, clients: list[PhoenixClient]
) -> None:
    client = await connect(devstack_url, clients)
    other_conversation = await add_conversation(db, inbox.workspace_id)
    bindings = [
        binding(inbox.conversation_id, "INSERT"),
        binding(inbox.conversation_id, "UPDATE", filter=f"conversation_id=eq.{inbox.conversation_id},status=in.(read,played)"),
        {"event": "*", "schema": "public", "table": "messages", "filter": "direction=neq.outbound"},
        binding(other_conversation, "DELETE"),
    ]  # fmt: skip
    _, ids, system = await subscribe(client, "filters", bindings, user_token(inbox.member))
    assert system.payload["status"] == "ok"

    message_id = await insert_customer_message(db, inbox)
    frame = await client.next_event("postgres_changes")
    # Realtime lists a channel's matching bindings last first
    assert frame.payload["ids"] == [ids[2], ids[0]]
    await db.execute("update public.messages set status = 'delivered' where id = $1", message_id)
    assert (await client.next_event("postgres_changes")).payload["ids"] == [ids[2]]
    await db.execute("update public.messages set status = 'read' where id = $1", message_id)
    assert (await client.next_event("postgres_changes")).payload["ids"] == [ids[2], ids[1]]
    await client.nothing()


@pytest.mark.parametrize(
    ("params", "message"),
    [
        (
            {"event": "*", "schema": "public", "table": "messages", "filter": "id=foo.1"},
            'Error parsing `filter` params: ["foo", "1"]',
        ),
        (
            {"event": "*", "schema": "public", "table": "nope"},
            "Unable to subscribe to changes with given parameters. Please check Realtime is "
            "enabled for the given connect parameters: [event: *, schema: public, table: nope, "
            "filters: [], select: nil]",
        ),
        (
            {"event": "INSERT", "schema": "public", "table": "messages", "filter": "nope=eq.1"},
            "Unable to subscribe to changes with given parameters. An exception happened so "
            "please check your connect parameters: [event: INSERT, schema: public, table: "
            'messages, filters: [{"nope", "eq", "1", false}], select: nil]. '
            "Exception: ERROR P0001 (raise_exception) invalid column for filter nope",
        ),
        (
            {"event": "INSERT", "schema": "public", "table": "messages", "filter": "id=eq.x"},
            "Unable to subscribe to changes with given parameters. An exception happened so "
            "please check your connect parameters: [event: INSERT, schema: public, table: "
            'messages, filters: [{"id", "eq", "x", false}], select: nil]. '
            "Exception: ERROR 22P02 (invalid_text_representation) invalid input syntax for "
            'type uuid: "x"',
        ),
    ],
    ids=["operator", "unpublished table", "column", "value"],
)
async def test_bindings_realtime_refuses_get_a_system_error_after_an_ok_reply(
    devstack_url: str,
    inbox: Inbox,
    clients: list[PhoenixClient],
    params: dict[str, Any],
    message: str,
) -> None:
    client = await connect(devstack_url, clients)
    _, _, system = await subscribe(client, "refused", [params], user_token(inbox.member))
    assert system.payload == {
        "extension": "postgres_changes",
        "status": "error",
        "message": message,
        "channel": "refused",
    }


async def test_a_refreshed_token_subscribes_again_with_the_new_claims(
    devstack_url: str, db: asyncpg.Pool, inbox: Inbox, clients: list[PhoenixClient]
) -> None:
    client = await connect(devstack_url, clients)
    join_ref, _, _ = await subscribe(
        client, "refresh", [binding(inbox.conversation_id)], user_token(inbox.stranger)
    )
    await insert_customer_message(db, inbox)
    await client.nothing(1.0)

    await client.push(
        "realtime:refresh",
        "access_token",
        {"access_token": user_token(inbox.member)},
        join_ref=join_ref,
    )
    system = await client.next_event("system")
    assert system.payload["message"] == "Subscribed to PostgreSQL"
    message_id = await insert_customer_message(db, inbox)
    data = (await client.next_event("postgres_changes")).payload["data"]
    assert data["record"]["id"] == str(message_id)


async def test_column_selection_and_column_grants_shape_the_record(
    devstack_url: str, db: asyncpg.Pool, inbox: Inbox, clients: list[PhoenixClient]
) -> None:
    client = await connect(devstack_url, clients)
    await subscribe(
        client,
        "select",
        [binding(inbox.conversation_id, "INSERT", select=["content", "status"])],
        user_token(inbox.member),
    )
    message_id = await insert_customer_message(db, inbox)
    data = (await client.next_event("postgres_changes")).payload["data"]
    # the primary key always comes along
    assert [c["name"] for c in data["columns"]] == ["id", "content", "status"]
    assert data["record"] == {"id": str(message_id), "status": None, "content": {"body": "hola"}}


async def test_nothing_is_captured_for_tables_nobody_listens_to(
    devstack_url: str, db: asyncpg.Pool, inbox: Inbox, clients: list[PhoenixClient]
) -> None:
    client = await connect(devstack_url, clients)
    join_ref, _, _ = await subscribe(
        client, "quiet", [binding(inbox.conversation_id)], user_token(inbox.member)
    )
    listening = "select count(*) from devstack_realtime.listeners where entity = 'public.messages'::regclass"
    assert await db.fetchval(listening) >= 1
    await client.push("realtime:quiet", "phx_leave", {}, ref=client.next_ref(), join_ref=join_ref)
    await client.next_event("phx_close")
    await client.nothing()

    async def captured() -> int:
        value: int = await db.fetchval(
            "select count(*) from devstack_realtime.changes where entity = 'public.messages'::regclass"
            " and record ->> 'conversation_id' = $1",
            str(inbox.conversation_id),
        )
        return value

    before = await captured()
    await insert_customer_message(db, inbox)
    assert await captured() == before


async def test_an_expired_token_ends_the_subscription(
    devstack_url: str, db: asyncpg.Pool, inbox: Inbox, clients: list[PhoenixClient]
) -> None:
    client = await connect(devstack_url, clients)
    claims = {"role": "authenticated", "sub": str(inbox.member), "exp": int(time.time()) + 2}
    token = jwt.encode(claims, LOCAL_JWT_SECRET, algorithm="HS256")
    await subscribe(client, "expiring", [binding(inbox.conversation_id)], token)
    system = await client.next_event("system", within=5)
    assert system.payload["status"] == "error"
    await insert_customer_message(db, inbox)
    frame = await client.recv()
    assert frame.event == "phx_close"
    await client.nothing(1.0)


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        (
            {"event": "insert", "schema": "public", "table": "messages", "filter": "a=eq.1"},
            Params("INSERT", "public", "messages", (Filter("a", "eq", "1", False),), None),
        ),
        (
            {"event": "*", "schema": "public", "table": "t", "filter": 'a=not.in.(x,"y,z"),b=gt.2'},
            Params(
                "*",
                "public",
                "t",
                (Filter("a", "in", '{x,"y,z"}', True), Filter("b", "gt", "2", False)),
                None,
            ),
        ),
        (
            {"event": "*", "schema": "public", "table": "t", "filter": 'a=eq."1,2"'},
            Params("*", "public", "t", (Filter("a", "eq", "1,2", False),), None),
        ),
        ({"schema": "public"}, Params("*", "public", "*", (), None)),
        ({"table": "t", "select": ["a"]}, Params("*", "public", "t", (), ("a",))),
        (
            {"event": "nope", "schema": "s", "table": "t", "filter": " "},
            Params("*", "s", "t", (), None),
        ),
    ],
)
def test_bindings_are_read_as_realtime_reads_them(params: dict[str, Any], expected: Params) -> None:
    assert parse(params) == expected


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"schema": "public", "table": "t", "filter": "undefined"}, 'Error parsing `filter` params: ["undefined"]'),
        ({"schema": "public", "table": "t", "filter": "a=in.1"}, "Error parsing `filter` params: `in` filter value must be wrapped by parentheses"),
        ({"schema": "public", "table": "t", "filter": "a=eq.1,"}, "Error parsing `filter` params: filter must not contain empty segments (check for extra commas)"),
        ({}, "No subscription params provided. Please provide at least a `schema` or `table` to subscribe to: %{}"),
        ({"schema": "*", "select": ["a"]}, "Column selection is not supported for wildcard subscriptions. Provide an explicit schema and table name."),
    ],
)  # fmt: skip
def test_bindings_realtime_cannot_read_are_refused_with_its_words(
    params: dict[str, Any], message: str
) -> None:
    with pytest.raises(ParamsError) as raised:
        parse(params)
    assert str(raised.value) == message
