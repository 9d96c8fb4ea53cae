"""The PostgREST RPC stand-in driven by the real clients: supabase-py (async) and postgrest-py.

Each function the tests call is created by the module fixture, in `public` with a
`devstack_test_` prefix, and dropped afterwards.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import asyncpg
import httpx
import jwt
import pytest
from postgrest import APIError, AsyncPostgrestClient
from postgrest.types import CountMethod
from supabase import AsyncClient, AsyncClientOptions, acreate_client

from devstack.config import LOCAL_JWT_SECRET
from tests.fixtures.devstack import ANON_KEY, SERVICE_ROLE_KEY

USER_ID = uuid.UUID("7d3a1c52-8a8f-4c55-9d0e-2f6b1b0c9e11")
OTHER_USER_ID = uuid.UUID("0b9a4b0e-5f60-4f0c-8a47-7b35c3b0b7d2")

SCHEMA_SQL = f"""
create type public.devstack_test_pair as (a integer, b text);

create table public.devstack_test_notes (
  id integer primary key, owner uuid, body text not null
);
alter table public.devstack_test_notes enable row level security;
create policy devstack_test_notes_anon_select on public.devstack_test_notes
  for select to anon using (owner is null);
create policy devstack_test_notes_authenticated_select on public.devstack_test_notes
  for select to authenticated using (owner = (select auth.uid()));
grant select on public.devstack_test_notes to anon, authenticated, service_role;
insert into public.devstack_test_notes values
  (1, null, 'public'), (2, '{USER_ID}', 'mine'), (3, '{OTHER_USER_ID}', 'theirs');

create table public.devstack_test_log (
  id bigserial primary key, note text not null unique
);
create table public.devstack_test_child (
  id bigserial primary key,
  parent_id bigint not null references public.devstack_test_log (id)
);
grant all on public.devstack_test_log, public.devstack_test_child
  to anon, authenticated, service_role;
grant all on sequence public.devstack_test_log_id_seq, public.devstack_test_child_id_seq
  to anon, authenticated, service_role;
create sequence public.devstack_test_counter;
grant all on sequence public.devstack_test_counter to anon, authenticated, service_role;

create function public.devstack_test_add(a integer, b integer) returns integer
language sql immutable as 'select a + b';

create function public.devstack_test_echo(
  t text, n numeric, i integer, flag boolean, u uuid, doc jsonb, tags text[], nums integer[],
  at timestamptz, missing text default 'the default'
) returns jsonb
language sql immutable as $$
  select jsonb_build_object(
    't', t, 'n_text', n::text, 'i_plus_one', i + 1, 'not_flag', not flag, 'u_version',
    pg_catalog.substr(u::text, 15, 1), 'doc', doc, 'tags', tags, 'nums_sum',
    (select sum(x) from unnest(nums) x), 'at_epoch', extract(epoch from at)::bigint,
    'missing', missing)
$$;

create function public.devstack_test_series(n integer) returns setof integer
language sql immutable as 'select pg_catalog.generate_series(1, n)';

create function public.devstack_test_make_pair(a integer, b text)
returns public.devstack_test_pair
language sql immutable as 'select (a, b)::public.devstack_test_pair';

create function public.devstack_test_rows(n integer)
returns table (k integer, label text, at timestamptz)
language sql immutable as $$
  select g, 'row ' || g, timestamptz '2024-01-02 03:04:05+00' + g * interval '1 hour'
  from pg_catalog.generate_series(1, n) g
$$;

create function public.devstack_test_write_note(note text) returns void
language sql as 'insert into public.devstack_test_log (note) values (note)';

create function public.devstack_test_whole(jsonb) returns jsonb
language sql immutable as $$ select $1 || '{{"seen": true}}' $$;

create function public.devstack_test_whoami() returns jsonb
language sql stable as $$
  select jsonb_build_object('current_user', current_user, 'role', auth.role(),
                            'uid', auth.uid(), 'email', auth.jwt() ->> 'email')
$$;

create function public.devstack_test_visible_notes()
returns setof public.devstack_test_notes
language sql stable security invoker as 'select * from public.devstack_test_notes order by id';

create function public.devstack_test_request() returns jsonb
language sql stable as $$
  select jsonb_build_object(
    'method', current_setting('request.method', true),
    'path', current_setting('request.path', true),
    'headers', current_setting('request.headers', true)::jsonb,
    'cookies', current_setting('request.cookies', true)::jsonb,
    'claims', current_setting('request.jwt.claims', true)::jsonb,
    'search_path', current_setting('search_path'))
$$;

create function public.devstack_test_fail() returns integer
language plpgsql as $$
begin
  raise exception 'job % locked', 7 using detail = 'held by w1', hint = 'retry later';
end
$$;

create function public.devstack_test_log_note(note text) returns bigint
language sql as 'insert into public.devstack_test_log (note) values (note) returning id';

create function public.devstack_test_adopt(parent bigint) returns void
language sql as 'insert into public.devstack_test_child (parent_id) values (parent)';

create function public.devstack_test_private() returns text
language sql as $$ select 'secret' $$;
revoke execute on function public.devstack_test_private() from public, anon, authenticated;
grant execute on function public.devstack_test_private() to service_role;

create function public.devstack_test_pay() returns void
language plpgsql as $$
begin
  raise sqlstate 'PT402' using message = 'payment required', detail = 'invoice 12 is overdue',
    hint = 'pay the invoice';
end
$$;

create function public.devstack_test_teapot() returns void
language plpgsql as $$
begin
  raise sqlstate 'PGRST' using
    message = '{{"code": "TEA01", "message": "short and stout", "hint": "tip me over"}}',
    detail = '{{"status": 418, "headers": {{"X-Pot": "full"}}}}';
end
$$;

create function public.devstack_test_created() returns integer
language plpgsql as $$
begin
  perform set_config('response.status', '201', true);
  perform set_config('response.headers', '[{{"Location": "/things/7"}}]', true);
  return 7;
end
$$;

create function public.devstack_test_count_up() returns bigint
language sql stable as $$ select nextval('public.devstack_test_counter') $$;
"""

TEARDOWN_SQL = """
drop function if exists public.devstack_test_add, public.devstack_test_echo,
  public.devstack_test_series, public.devstack_test_make_pair, public.devstack_test_rows,
  public.devstack_test_write_note, public.devstack_test_whole, public.devstack_test_whoami,
  public.devstack_test_visible_notes, public.devstack_test_request, public.devstack_test_fail,
  public.devstack_test_log_note, public.devstack_test_adopt, public.devstack_test_private,
  public.devstack_test_pay, public.devstack_test_count_up, public.devstack_test_undo,
  public.devstack_test_teapot, public.devstack_test_created,
  public.devstack_test_reshaped;
drop table if exists public.devstack_test_notes, public.devstack_test_child,
  public.devstack_test_log;
drop sequence if exists public.devstack_test_counter;
drop type if exists public.devstack_test_pair;
"""


@pytest.fixture(scope="module", autouse=True)
async def rpc_functions(db: asyncpg.Pool) -> AsyncIterator[None]:
    await db.execute(SCHEMA_SQL)
    yield
    await db.execute(TEARDOWN_SQL)


def user_token(*, sub: uuid.UUID = USER_ID, expires_in: int = 3600) -> str:
    """A JWT shaped like GoTrue's, signed with the local secret."""
    now = int(time.time())
    claims = {
        "aud": "authenticated",
        "role": "authenticated",
        "sub": str(sub),
        "email": "agent@example.com",
        "iat": now,
        "exp": now + expires_in,
        "session_id": str(uuid.uuid4()),
        "is_anonymous": False,
    }
    return jwt.encode(claims, LOCAL_JWT_SECRET, algorithm="HS256")


@asynccontextmanager
async def supabase(
    url: str, key: str, *, access_token: str | None = None
) -> AsyncIterator[AsyncClient]:
    # An own httpx client: supabase-py otherwise hands postgrest-py a timeout, which postgrest-py
    # 2.34 deprecates with a warning (an error under this suite's warning filter).
    async with httpx.AsyncClient(timeout=10) as http:
        options = AsyncClientOptions(
            auto_refresh_token=False, persist_session=False, httpx_client=http
        )
        if access_token is not None:
            # How an app acts for a signed-in user: the anon key plus the user's access token.
            options.headers = {**options.headers, "Authorization": f"Bearer {access_token}"}
        yield await acreate_client(url, key, options=options)


@asynccontextmanager
async def postgrest(url: str, token: str) -> AsyncIterator[AsyncPostgrestClient]:
    headers = {"apikey": ANON_KEY, "Authorization": f"Bearer {token}"}
    async with AsyncPostgrestClient(f"{url}/rest/v1", headers=headers) as client:
        yield client


async def test_named_arguments_of_many_types_reach_the_function_typed(devstack_url: str) -> None:
    params = {
        "t": "héllo ✓",
        "n": "12.50",
        "i": "41",  # a numeric string is a valid integer, as behind PostgREST
        "flag": True,
        "u": "6f1f3c1e-1b5c-4c3e-9c3e-1b5c4c3e9c3e",
        "doc": {"nested": [1, None, {"k": "v"}]},
        "tags": ["a", "b c"],
        "nums": [1, 2, 3],
        "at": "2024-05-01T12:00:00+02:00",
    }
    async with supabase(devstack_url, SERVICE_ROLE_KEY) as client:
        result = await client.rpc("devstack_test_echo", params).execute()

    assert result.data == {
        "t": "héllo ✓",
        "n_text": "12.50",
        "i_plus_one": 42,
        "not_flag": False,
        "u_version": "4",
        "doc": {"nested": [1, None, {"k": "v"}]},
        "tags": ["a", "b c"],
        "nums_sum": 6,
        "at_epoch": 1714557600,
        "missing": "the default",
    }


async def test_every_return_shape(devstack_url: str, db: asyncpg.Pool) -> None:
    note = f"note-{uuid.uuid4()}"
    async with supabase(devstack_url, SERVICE_ROLE_KEY) as client:
        scalar = await client.rpc("devstack_test_add", {"a": 2, "b": 3}).execute()
        set_of_scalars = await client.rpc("devstack_test_series", {"n": 3}).execute()
        composite = await client.rpc("devstack_test_make_pair", {"a": 1, "b": "x"}).execute()
        table = await client.rpc("devstack_test_rows", {"n": 2}).execute()
        empty_table = await client.rpc("devstack_test_rows", {"n": 0}).execute()
        void = await client.rpc("devstack_test_write_note", {"note": note}).execute()
        whole_body = await client.rpc("devstack_test_whole", {"any": ["thing"]}).execute()

    assert scalar.data == 5
    assert set_of_scalars.data == [1, 2, 3]
    assert composite.data == {"a": 1, "b": "x"}
    rows: Any = table.data
    assert [(row["k"], row["label"]) for row in rows] == [(1, "row 1"), (2, "row 2")]
    assert datetime.fromisoformat(rows[0]["at"]) == datetime(2024, 1, 2, 4, 4, 5, tzinfo=UTC)
    assert empty_table.data == []
    assert void.data == []
    assert await db.fetchval("select count(*) from devstack_test_log where note = $1", note) == 1
    assert whole_body.data == {"any": ["thing"], "seen": True}


async def test_wire_format_of_success_responses(devstack_url: str) -> None:
    async with httpx.AsyncClient(base_url=f"{devstack_url}/rest/v1") as http:
        scalar = await http.post("/rpc/devstack_test_add", json={"a": 1, "b": 1})
        void = await http.post("/rpc/devstack_test_write_note", json={"note": str(uuid.uuid4())})

    assert scalar.status_code == 200
    assert scalar.headers["content-type"] == "application/json; charset=utf-8"
    assert scalar.text == "2"
    assert void.status_code == 204
    assert void.content == b""
    assert "content-type" not in void.headers


@pytest.mark.parametrize(
    ("key", "access_token", "expected"),
    [
        (ANON_KEY, None, {"current_user": "anon", "role": "anon", "uid": None, "email": None}),
        (
            SERVICE_ROLE_KEY,
            None,
            {"current_user": "service_role", "role": "service_role", "uid": None, "email": None},
        ),
        (
            ANON_KEY,
            user_token(),
            {
                "current_user": "authenticated",
                "role": "authenticated",
                "uid": str(USER_ID),
                "email": "agent@example.com",
            },
        ),
    ],
    ids=["anon", "service_role", "user"],
)
async def test_the_role_and_claims_come_from_the_jwt(
    devstack_url: str, key: str, access_token: str | None, expected: dict[str, Any]
) -> None:
    async with supabase(devstack_url, key, access_token=access_token) as client:
        result = await client.rpc("devstack_test_whoami").execute()
    assert result.data == expected


@pytest.mark.parametrize(
    ("key", "access_token", "visible"),
    [
        (ANON_KEY, None, ["public"]),
        (ANON_KEY, user_token(), ["mine"]),
        (ANON_KEY, user_token(sub=OTHER_USER_ID), ["theirs"]),
        (SERVICE_ROLE_KEY, None, ["public", "mine", "theirs"]),
    ],
    ids=["anon", "user", "other-user", "service_role"],
)
async def test_row_level_security_applies_to_the_requesting_role(
    devstack_url: str, key: str, access_token: str | None, visible: list[str]
) -> None:
    async with supabase(devstack_url, key, access_token=access_token) as client:
        result = await client.rpc("devstack_test_visible_notes").execute()
    rows: Any = result.data
    assert [row["body"] for row in rows] == visible


async def test_request_settings_are_visible_to_sql(devstack_url: str) -> None:
    async with supabase(devstack_url, ANON_KEY) as client:
        result = await client.rpc("devstack_test_request").execute()

    seen: Any = result.data
    assert seen["method"] == "POST"
    assert seen["path"] == "/rpc/devstack_test_request"
    assert seen["headers"]["apikey"] == ANON_KEY
    assert seen["headers"]["authorization"] == f"Bearer {ANON_KEY}"
    assert seen["headers"]["content-profile"] == "public"
    assert seen["headers"]["x-client-info"].startswith("supabase-py/")
    assert seen["cookies"] == {}
    assert seen["claims"] == {"iss": "supabase-demo", "role": "anon", "exp": 1983812996}
    assert seen["search_path"] == '"public", "public", "extensions"'

    async with httpx.AsyncClient() as http:
        response = await http.post(
            f"{devstack_url}/rest/v1/rpc/devstack_test_request",
            headers={"Cookie": "theme=dark; lang=de", "X-Trace": "abc"},
        )
    seen = response.json()
    assert seen["cookies"] == {"theme": "dark", "lang": "de"}
    assert seen["headers"]["x-trace"] == "abc"
    assert "cookie" not in seen["headers"]
    assert seen["claims"] == {"role": "anon"}


ERROR_CASES = [
    pytest.param(
        "devstack_test_fail", {}, SERVICE_ROLE_KEY,
        400, "P0001", "job 7 locked", "held by w1", "retry later", id="P0001",
    ),
    pytest.param(
        "devstack_test_log_note", {"note": "duplicate"}, SERVICE_ROLE_KEY,
        409, "23505", 'duplicate key value violates unique constraint "devstack_test_log_note_key"',
        "Key (note)=(duplicate) already exists.", None, id="23505",
    ),
    pytest.param(
        "devstack_test_adopt", {"parent": -1}, SERVICE_ROLE_KEY,
        409, "23503",
        'insert or update on table "devstack_test_child" violates foreign key constraint '
        '"devstack_test_child_parent_id_fkey"',
        'Key (parent_id)=(-1) is not present in table "devstack_test_log".', None, id="23503",
    ),
    pytest.param(
        "devstack_test_private", {}, ANON_KEY,
        401, "42501", "permission denied for function devstack_test_private", None, None,
        id="42501-anon",
    ),
    pytest.param(
        "devstack_test_private", {}, user_token(),
        403, "42501", "permission denied for function devstack_test_private", None, None,
        id="42501-authenticated",
    ),
    pytest.param(
        "devstack_test_pay", {}, SERVICE_ROLE_KEY,
        402, "PT402", "payment required", "invoice 12 is overdue", "pay the invoice", id="PT402",
    ),
    pytest.param(
        "devstack_test_count_up", {}, SERVICE_ROLE_KEY,
        405, "25006", "cannot execute nextval() in a read-only transaction", None, None,
        id="25006",
    ),
    pytest.param(
        "devstack_test_add", {"a": "x", "b": 1}, SERVICE_ROLE_KEY,
        400, "22P02", 'invalid input syntax for type integer: "x"', None, None, id="22P02",
    ),
    pytest.param(
        "devstack_test_nonexistent", {"a": 1}, ANON_KEY,
        404, "PGRST202",
        "Could not find the function public.devstack_test_nonexistent(a) in the schema cache",
        "Searched for the function public.devstack_test_nonexistent with parameter a or with a "
        "single unnamed json/jsonb parameter, but no matches were found in the schema cache.",
        None, id="PGRST202",
    ),
]  # fmt: skip


@pytest.mark.parametrize(
    ("function", "params", "token", "status", "code", "message", "details", "hint"), ERROR_CASES
)
async def test_errors_map_to_postgrest_codes_and_statuses(
    devstack_url: str,
    db: asyncpg.Pool,
    function: str,
    params: dict[str, Any],
    token: str,
    status: int,
    code: str,
    message: str,
    details: str | None,
    hint: str | None,
) -> None:
    await db.execute(
        "insert into devstack_test_log (note) values ('duplicate') on conflict do nothing"
    )
    async with postgrest(devstack_url, token) as client:
        with pytest.raises(APIError) as raised:
            await client.rpc(function, params).execute()
    error = raised.value
    assert (error.code, error.message, error.details, error.hint) == (code, message, details, hint)

    async with httpx.AsyncClient() as http:
        response = await http.post(
            f"{devstack_url}/rest/v1/rpc/{function}",
            json=params,
            headers={"apikey": ANON_KEY, "Authorization": f"Bearer {token}"},
        )
    assert response.status_code == status
    assert response.headers["proxy-status"] == f"PostgREST; error={code}"
    assert response.json() == {"code": code, "message": message, "details": details, "hint": hint}
    if status == 401:
        assert response.headers["www-authenticate"] == "Bearer"


async def test_a_failed_call_rolls_its_writes_back(devstack_url: str, db: asyncpg.Pool) -> None:
    note = f"rolled-back-{uuid.uuid4()}"
    await db.execute(
        """create or replace function public.devstack_test_undo(note text) returns integer
        language plpgsql as $$
        begin
          insert into public.devstack_test_log (note) values (note);
          raise exception 'changed my mind';
        end $$"""
    )
    async with postgrest(devstack_url, SERVICE_ROLE_KEY) as client:
        with pytest.raises(APIError):
            await client.rpc("devstack_test_undo", {"note": note}).execute()
    assert await db.fetchval("select count(*) from devstack_test_log where note = $1", note) == 0


async def test_functions_created_or_replaced_while_running_are_called_as_they_are_now(
    devstack_url: str, db: asyncpg.Pool
) -> None:
    async with postgrest(devstack_url, SERVICE_ROLE_KEY) as client:
        await db.execute(
            "create or replace function public.devstack_test_reshaped() returns integer"
            " language sql as 'select 1'"
        )
        first = await client.rpc("devstack_test_reshaped", {}).execute()
        await db.execute(
            "drop function public.devstack_test_reshaped();"
            " create function public.devstack_test_reshaped() returns table (x text)"
            " language sql as $$ values ('a'), ('b') $$"
        )
        second = await client.rpc("devstack_test_reshaped", {}).execute()
    assert first.data == 1
    assert second.data == [{"x": "a"}, {"x": "b"}]


async def test_get_calls_a_stable_function_with_query_arguments(devstack_url: str) -> None:
    async with postgrest(devstack_url, SERVICE_ROLE_KEY) as client:
        result = await client.rpc("devstack_test_add", {"a": "20", "b": "22"}, get=True).execute()
    assert result.data == 42


async def test_count_preference_fills_content_range(devstack_url: str) -> None:
    params: dict[str, Any] = {"n": 4}
    async with postgrest(devstack_url, SERVICE_ROLE_KEY) as client:
        result = await client.rpc("devstack_test_series", params, count=CountMethod.exact).execute()
    assert result.data == [1, 2, 3, 4]
    assert result.count == 4


async def test_raise_pgrst_controls_the_whole_error_response(devstack_url: str) -> None:
    async with httpx.AsyncClient() as http:
        response = await http.post(f"{devstack_url}/rest/v1/rpc/devstack_test_teapot")
    assert response.status_code == 418
    assert response.headers["x-pot"] == "full"
    assert response.json() == {
        "code": "TEA01",
        "message": "short and stout",
        "details": None,
        "hint": "tip me over",
    }


async def test_response_settings_override_status_and_headers(devstack_url: str) -> None:
    async with httpx.AsyncClient() as http:
        response = await http.post(f"{devstack_url}/rest/v1/rpc/devstack_test_created")
    assert (response.status_code, response.json()) == (201, 7)
    assert response.headers["location"] == "/things/7"
