"""PostgREST table reads and updates (`/rest/v1/<table>`) against the seeded schema, as the
signed-in members of the two demo workspaces, over HTTP and through supabase-py."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import httpx
import pytest
from postgrest import APIError
from supabase import AsyncClient, AsyncClientOptions, acreate_client

from tests.devstack.inbox_data import (
    ANA,
    DAVE,
    DEMO_PASSWORD,
    DEMO_STORE,
    OTHER_SHOP,
    Conversation,
    make_conversation,
)
from tests.fixtures.devstack import ANON_KEY


async def sign_in(url: str, email: str) -> str:
    async with httpx.AsyncClient(base_url=url, headers={"apikey": ANON_KEY}) as http:
        response = await http.post(
            "/auth/v1/token",
            params={"grant_type": "password"},
            json={"email": email, "password": DEMO_PASSWORD},
        )
    assert response.status_code == 200, response.text
    token: str = response.json()["access_token"]
    return token


@asynccontextmanager
async def rest(url: str, email: str | None) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client on /rest/v1 as the browser app sends: the anon key, and the member's
    access token once signed in."""
    headers = {"apikey": ANON_KEY}
    if email is not None:
        headers["Authorization"] = f"Bearer {await sign_in(url, email)}"
    async with httpx.AsyncClient(base_url=f"{url}/rest/v1", headers=headers) as http:
        yield http


@pytest.fixture(scope="module")
async def ana_conversation(db: asyncpg.Pool) -> Conversation:
    return await make_conversation(db, DEMO_STORE, messages=3)


@pytest.fixture(scope="module")
async def dave_conversation(db: asyncpg.Pool) -> Conversation:
    return await make_conversation(db, OTHER_SHOP, messages=1)


# -- reads -----------------------------------------------------------------------------------------


async def test_a_member_reads_one_conversations_messages_filtered_and_ordered(
    devstack_url: str, ana_conversation: Conversation
) -> None:
    async with rest(devstack_url, ANA) as http:
        response = await http.get(
            "/messages",
            params={
                "select": "wamid,direction,content",
                "conversation_id": f"eq.{ana_conversation.id}",
                "order": "timestamp.desc",
            },
        )
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json; charset=utf-8"
    assert response.headers["content-range"] == "0-2/*"
    rows = response.json()
    assert [r["wamid"] for r in rows] == list(reversed(ana_conversation.wamids))
    assert rows[0] == {"wamid": ana_conversation.wamids[2], "direction": "inbound",
                       "content": {"text": "message 2"}}  # fmt: skip
    assert list(rows[0]) == ["wamid", "direction", "content"]


async def test_star_returns_every_column_in_table_order(
    devstack_url: str, db: asyncpg.Pool, ana_conversation: Conversation
) -> None:
    columns = [
        r["attname"]
        for r in await db.fetch(
            "select attname from pg_attribute where attrelid = 'public.messages'::regclass"
            " and attnum > 0 and not attisdropped order by attnum"
        )
    ]
    async with rest(devstack_url, ANA) as http:
        response = await http.get(
            "/messages", params={"conversation_id": f"eq.{ana_conversation.id}", "limit": "1"}
        )
    assert list(response.json()[0]) == columns


async def test_embedded_resources_follow_the_foreign_keys(
    devstack_url: str, ana_conversation: Conversation
) -> None:
    async with rest(devstack_url, ANA) as http:
        many_to_one = await http.get(
            "/messages",
            params={
                "select": "wamid,conversations(id,contacts(name))",
                "wamid": f"eq.{ana_conversation.wamids[0]}",
            },
        )
        one_to_many = await http.get(
            "/conversations",
            params={
                "select": "id,customer:contacts(name),latest:messages(wamid)",
                "id": f"eq.{ana_conversation.id}",
                "latest.order": "timestamp.desc",
                "latest.limit": "2",
            },
        )
    assert many_to_one.json() == [
        {
            "wamid": ana_conversation.wamids[0],
            "conversations": {
                "id": str(ana_conversation.id),
                "contacts": {"name": ana_conversation.contact_name},
            },
        }
    ]
    assert one_to_many.json() == [
        {
            "id": str(ana_conversation.id),
            "customer": {"name": ana_conversation.contact_name},
            "latest": [{"wamid": w} for w in reversed(ana_conversation.wamids[1:])],
        }
    ]


async def test_filters_in_is_like_and_not(
    devstack_url: str, ana_conversation: Conversation
) -> None:
    first, second, third = ana_conversation.wamids
    conversation = f"eq.{ana_conversation.id}"
    cases: list[tuple[dict[str, str], list[str]]] = [
        ({"wamid": f'in.({first},"{third}")'}, [first, third]),
        ({"wamid": f"not.in.({first})"}, [second, third]),
        ({"wamid": f"neq.{second}"}, [first, third]),
        ({"edited_at": "is.null"}, [first, second, third]),
        ({"edited_at": "not.is.null"}, []),
        ({"wamid": f"like.*{third[-6:]}"}, [third]),
        ({"timestamp": "gt.2026-01-01T10:00:30Z"}, [second, third]),
        ({"timestamp": "lte.2026-01-01T10:01:00Z"}, [first, second]),
    ]
    async with rest(devstack_url, ANA) as http:
        for params, expected in cases:
            response = await http.get(
                "/messages",
                params={"select": "wamid", "conversation_id": conversation, "order": "timestamp",
                        **params},
            )  # fmt: skip
            assert response.status_code == 200, (params, response.text)
            assert [r["wamid"] for r in response.json()] == expected, params


async def test_logic_trees_or_and_not(devstack_url: str, ana_conversation: Conversation) -> None:
    first, second, third = ana_conversation.wamids
    cases: list[tuple[dict[str, str], list[str]]] = [
        ({"or": f"(wamid.eq.{first},wamid.eq.{third})"}, [first, third]),
        ({"not.or": f"(wamid.eq.{first},wamid.eq.{third})"}, [second]),
        (
            {"or": f'(wamid.eq."{second}",and(wamid.neq.{first},edited_at.is.null))'},
            [second, third],
        ),
        ({"and": f"(wamid.in.({first},{second}),not.or(wamid.eq.{first}))"}, [second]),
    ]
    async with rest(devstack_url, ANA) as http:
        for params, expected in cases:
            response = await http.get(
                "/messages",
                params={"select": "wamid", "conversation_id": f"eq.{ana_conversation.id}",
                        "order": "timestamp", **params},
            )  # fmt: skip
            assert response.status_code == 200, (params, response.text)
            assert [r["wamid"] for r in response.json()] == expected, params
        embedded = await http.get(
            "/conversations",
            params={"select": "id,messages(wamid)", "id": f"eq.{ana_conversation.id}",
                    "messages.or": f"(wamid.eq.{first},wamid.eq.{second})",
                    "messages.order": "timestamp.desc"},
        )  # fmt: skip
    assert embedded.json()[0]["messages"] == [{"wamid": second}, {"wamid": first}]


async def test_limit_offset_and_exact_count(
    devstack_url: str, ana_conversation: Conversation
) -> None:
    params = {
        "select": "wamid",
        "conversation_id": f"eq.{ana_conversation.id}",
        "order": "timestamp.asc",
        "limit": "1",
        "offset": "1",
    }
    async with rest(devstack_url, ANA) as http:
        counted = await http.get("/messages", params=params, headers={"Prefer": "count=exact"})
        beyond = await http.get(
            "/messages", params={**params, "offset": "7"}, headers={"Prefer": "count=exact"}
        )
    assert counted.status_code == 206
    assert counted.headers["content-range"] == "1-1/3"
    assert counted.headers["preference-applied"] == "count=exact"
    assert counted.json() == [{"wamid": ana_conversation.wamids[1]}]
    assert beyond.status_code == 416
    assert beyond.json()["code"] == "PGRST103"


async def test_single_object_or_postgrests_error(
    devstack_url: str, ana_conversation: Conversation
) -> None:
    single = {"Accept": "application/vnd.pgrst.object+json"}
    async with rest(devstack_url, ANA) as http:
        one = await http.get(
            "/conversations",
            params={"select": "id,status", "id": f"eq.{ana_conversation.id}"},
            headers=single,
        )
        none = await http.get(
            "/conversations", params={"id": "eq.00000000-0000-4000-8000-0000000000ff"},
            headers=single,
        )  # fmt: skip
        many = await http.get(
            "/messages",
            params={"select": "wamid", "conversation_id": f"eq.{ana_conversation.id}"},
            headers=single,
        )
    assert one.status_code == 200
    assert one.headers["content-type"] == "application/vnd.pgrst.object+json; charset=utf-8"
    assert one.json() == {"id": str(ana_conversation.id), "status": "active"}
    assert (none.status_code, many.status_code) == (406, 406)
    assert none.json() == {
        "code": "PGRST116",
        "details": "The result contains 0 rows",
        "hint": None,
        "message": "Cannot coerce the result to a single JSON object",
    }
    assert many.json()["details"] == "The result contains 3 rows"


@pytest.mark.parametrize(
    ("path", "params", "status", "body"),
    [
        (
            "/messages",
            {"select": "wamid,nope"},
            400,
            {"code": "42703", "details": None, "hint": None,
             "message": "column messages.nope does not exist"},
        ),
        (
            "/messages",
            {"nope": "eq.1"},
            400,
            {"code": "42703", "details": None, "hint": None,
             "message": "column messages.nope does not exist"},
        ),
        (
            "/mesages",
            {},
            404,
            {"code": "PGRST205", "details": None,
             "hint": "Perhaps you meant the table 'public.messages'",
             "message": "Could not find the table 'public.mesages' in the schema cache"},
        ),
        (
            "/messages",
            {"select": "*,tasks(*)"},
            400,
            {"code": "PGRST200",
             "details": "Searched for a foreign key relationship between 'messages' and 'tasks' "
                        "in the schema 'public', but no matches were found.",
             "hint": None,
             "message": "Could not find a relationship between 'messages' and 'tasks' in the "
                        "schema cache"},
        ),
        (
            "/conversations",
            {"select": "id", "messages.wamid": "eq.x"},
            400,
            {"code": "PGRST108", "details": None,
             "hint": "Verify that 'messages' is included in the 'select' query parameter.",
             "message": "'messages' is not an embedded resource in this request"},
        ),
    ],
)  # fmt: skip
async def test_unknown_names_get_postgrests_errors(
    devstack_url: str, path: str, params: dict[str, str], status: int, body: dict[str, Any]
) -> None:
    async with rest(devstack_url, ANA) as http:
        response = await http.get(path, params=params)
    assert response.status_code == status
    assert response.json() == body
    assert response.headers["proxy-status"] == f"PostgREST; error={body['code']}"


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({"id": "eqq.1"}, "PGRST100"),
        ({"order": "id.sideways"}, "PGRST100"),
        ({"select": "id,contacts(name"}, "PGRST100"),
        ({"or": "(id.eq.1,id.eq.2"}, "PGRST100"),
        ({"or": "(id.eqq.1)"}, "PGRST100"),
        ({"select": "id::text"}, "PGRST127"),
        ({"phone": "fts.hola"}, "PGRST127"),
    ],
)
async def test_what_is_malformed_or_not_served_is_refused(
    devstack_url: str, params: dict[str, str], code: str
) -> None:
    async with rest(devstack_url, ANA) as http:
        response = await http.get("/conversations", params=params)
    assert response.status_code == 400
    assert response.json()["code"] == code


async def test_writes_range_and_stripped_nulls_are_refused_not_pretended(devstack_url: str) -> None:
    async with rest(devstack_url, ANA) as http:
        for headers in (
            {"Range": "0-1"},
            {"Accept": "application/vnd.pgrst.array+json;nulls=stripped"},
        ):
            response = await http.get("/conversations", headers=headers)
            assert response.status_code == 400
            assert response.json()["code"] == "PGRST127"
        for method in ("POST", "DELETE", "PUT"):
            response = await http.request(method, "/conversations?id=eq.x", json={})
            assert response.status_code == 400
            assert response.json()["code"] == "PGRST127"


# -- RLS -------------------------------------------------------------------------------------------


async def test_each_workspace_reads_only_its_own_rows(
    devstack_url: str, ana_conversation: Conversation, dave_conversation: Conversation
) -> None:
    seen: dict[str | None, set[str]] = {}
    for who in (ANA, DAVE, None):
        async with rest(devstack_url, who) as http:
            conversations = await http.get("/conversations", params={"select": "workspace_id"})
            messages = await http.get("/messages", params={"select": "workspace_id"})
            channels = await http.get("/whatsapp_channels", params={"select": "workspace_id"})
            other = await http.get(
                "/messages",
                params={"conversation_id": f"eq.{dave_conversation.id}"}
                if who == ANA
                else {"conversation_id": f"eq.{ana_conversation.id}"},
            )
        assert other.json() == []
        seen[who] = {
            row["workspace_id"]
            for response in (conversations, messages, channels)
            for row in response.json()
        }
    assert seen[ANA] == {str(DEMO_STORE)}
    assert seen[DAVE] == {str(OTHER_SHOP)}
    assert seen[None] == set()


# -- updates ---------------------------------------------------------------------------------------


async def test_a_member_updates_a_conversation_of_their_workspace(
    devstack_url: str, db: asyncpg.Pool
) -> None:
    conversation = await make_conversation(db, DEMO_STORE, messages=0)
    async with rest(devstack_url, ANA) as http:
        response = await http.patch(
            "/conversations",
            params={"id": f"eq.{conversation.id}", "select": "id,is_read,contacts(name)"},
            json={"is_read": True, "unread_count": 0},
            headers={"Prefer": "return=representation"},
        )
        minimal = await http.patch(
            "/conversations", params={"id": f"eq.{conversation.id}"}, json={"status": "archived"}
        )
    assert response.status_code == 200
    assert response.headers["preference-applied"] == "return=representation"
    assert response.json() == [
        {"id": str(conversation.id), "is_read": True,
         "contacts": {"name": conversation.contact_name}}
    ]  # fmt: skip
    assert minimal.status_code == 204
    assert minimal.content == b""
    assert minimal.headers["content-range"] == "0-0/*"
    row = await db.fetchrow(
        "select is_read, status from public.conversations where id = $1", conversation.id
    )
    assert row is not None
    assert tuple(row) == (True, "archived")


async def test_a_member_of_the_other_workspace_updates_nothing(
    devstack_url: str, db: asyncpg.Pool
) -> None:
    conversation = await make_conversation(db, DEMO_STORE, messages=0)
    async with rest(devstack_url, DAVE) as http:
        response = await http.patch(
            "/conversations",
            params={"id": f"eq.{conversation.id}"},
            json={"status": "archived"},
            headers={"Prefer": "return=representation"},
        )
        single = await http.patch(
            "/conversations",
            params={"id": f"eq.{conversation.id}"},
            json={"status": "archived"},
            headers={"Accept": "application/vnd.pgrst.object+json"},
        )
    assert (response.status_code, response.json()) == (200, [])
    assert response.headers["content-range"] == "*/*"
    assert single.status_code == 406
    assert single.json()["code"] == "PGRST116"
    status = await db.fetchval(
        "select status from public.conversations where id = $1", conversation.id
    )
    assert status == "active"


async def test_updates_postgrest_and_postgres_refuse(devstack_url: str, db: asyncpg.Pool) -> None:
    conversation = await make_conversation(db, DEMO_STORE, messages=0)
    where = {"id": f"eq.{conversation.id}"}
    async with rest(devstack_url, ANA) as http:
        # a column members may not write (column grants): Postgres's 42501, 403 when signed in
        routing = await http.patch("/conversations", params=where, json={"phone_number_id": "1"})
        unknown = await http.patch("/conversations", params=where, json={"nope": 1})
        everything = await http.patch("/conversations", json={"is_read": True})
        invalid = await http.patch("/conversations", params=where, json={"unread_count": "x"})
    assert (routing.status_code, routing.json()["code"]) == (403, "42501")
    assert unknown.status_code == 400
    assert unknown.json() == {
        "code": "PGRST204",
        "details": None,
        "hint": None,
        "message": "Could not find the 'nope' column of 'conversations' in the schema cache",
    }
    assert (everything.status_code, everything.json()["code"]) == (400, "21000")
    assert (invalid.status_code, invalid.json()["code"]) == (400, "22P02")


# -- supabase-py -----------------------------------------------------------------------------------


@asynccontextmanager
async def supabase_as(url: str, email: str) -> AsyncIterator[AsyncClient]:
    async with httpx.AsyncClient(timeout=10) as http:
        options = AsyncClientOptions(
            auto_refresh_token=False, persist_session=False, httpx_client=http
        )
        token = await sign_in(url, email)
        options.headers = {**options.headers, "Authorization": f"Bearer {token}"}
        yield await acreate_client(url, ANON_KEY, options=options)


async def test_supabase_py_reads_tables_as_a_member(
    devstack_url: str, ana_conversation: Conversation, dave_conversation: Conversation
) -> None:
    async with supabase_as(devstack_url, ANA) as supabase:
        messages = (
            await supabase.table("messages")
            .select("wamid, conversations(contacts(name))")
            .eq("conversation_id", str(ana_conversation.id))
            .order("timestamp", desc=True)
            .limit(2)
            .execute()
        )
        conversation = (
            await supabase.table("conversations")
            .select("id")
            .eq("id", str(ana_conversation.id))
            .single()
            .execute()
        )
        theirs = (
            await supabase.table("conversations")
            .select("id")
            .eq("id", str(dave_conversation.id))
            .execute()
        )
        with pytest.raises(APIError) as raised:
            await supabase.table("conversations").select("nope").execute()
    rows: list[dict[str, Any]] = messages.data  # type: ignore[assignment]
    assert [m["wamid"] for m in rows] == list(reversed(ana_conversation.wamids))[:2]
    assert rows[0]["conversations"] == {"contacts": {"name": ana_conversation.contact_name}}
    assert conversation.data == {"id": str(ana_conversation.id)}
    assert theirs.data == []
    assert raised.value.code == "42703"
