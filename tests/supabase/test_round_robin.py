"""public.assign_next_agent: fair, atomic round-robin over a workspace's online team members."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import asyncpg
import pytest

from tests.fixtures.postgres import acting_as
from tests.supabase.tenancy import (
    add_member,
    add_team_member,
    claims_for,
    create_member,
    create_team,
    create_user,
    create_workspace,
)

ASSIGN = "select public.assign_next_agent($1)"


async def assign(
    conn: asyncpg.Connection,
    workspace_id: UUID,
    role: str = "service_role",
    claims: dict[str, Any] | None = None,
) -> UUID | None:
    """One committed call, as the worker or the frontend would make it through PostgREST."""
    async with conn.transaction():
        await conn.execute(
            "select set_config('request.jwt.claims', $1, true), set_config('role', $2, true)",
            json.dumps({"role": role, **(claims or {})}),
            role,
        )
        user_id: UUID | None = await conn.fetchval(ASSIGN, workspace_id)
    return user_id


async def workspace_with_team(
    conn: asyncpg.Connection, online: int, offline: int = 0
) -> tuple[UUID, UUID, list[UUID]]:
    """A workspace whose one team has `online` online members (sorted by id) and some offline."""
    owner = await create_user(conn)
    workspace_id = await create_workspace(conn, owner)
    team_id = await create_team(conn, workspace_id)
    members: list[UUID] = []
    for _ in range(online):
        user_id = await create_member(conn, workspace_id)
        await add_team_member(conn, team_id, user_id, online=True)
        members.append(user_id)
    for _ in range(offline):
        user_id = await create_member(conn, workspace_id)
        await add_team_member(conn, team_id, user_id, online=False)
    return workspace_id, team_id, sorted(members)


async def test_rotation_is_fair_and_in_order(conn: asyncpg.Connection) -> None:
    workspace_id, _, members = await workspace_with_team(conn, online=3, offline=1)
    picks = [await assign(conn, workspace_id) for _ in range(30)]
    assert Counter(picks) == {m: 10 for m in members}
    # Never-assigned members first, ties broken by user id; then the same cycle again.
    assert picks[:3] == members
    assert picks == members * 10


async def test_the_longest_waiting_member_goes_first(conn: asyncpg.Connection) -> None:
    owner = await create_user(conn)
    workspace_id = await create_workspace(conn, owner)
    team_id = await create_team(conn, workspace_id)
    now = datetime.now(UTC)
    recent, earlier, never = [await create_member(conn, workspace_id) for _ in range(3)]
    await add_team_member(conn, team_id, recent, last_assigned_at=now - timedelta(minutes=1))
    await add_team_member(conn, team_id, earlier, last_assigned_at=now - timedelta(hours=1))
    await add_team_member(conn, team_id, never)
    assert [await assign(conn, workspace_id) for _ in range(3)] == [never, earlier, recent]


async def test_stamps_every_row_of_the_person_in_the_workspace_only(
    conn: asyncpg.Connection,
) -> None:
    workspace_id, team_id, [person] = await workspace_with_team(conn, online=1)
    second_team = await create_team(conn, workspace_id)
    await add_team_member(conn, second_team, person, online=False)
    elsewhere = await create_workspace(conn, await create_user(conn))
    await add_member(conn, elsewhere, person, "agent")
    elsewhere_team = await create_team(conn, elsewhere)
    await add_team_member(conn, elsewhere_team, person)

    assert await assign(conn, workspace_id) == person
    stamps = await conn.fetch(
        "select tm.team_id, tm.last_assigned_at from public.team_members tm where tm.user_id = $1",
        person,
    )
    by_team = {r["team_id"]: r["last_assigned_at"] for r in stamps}
    assert by_team[team_id] is not None
    assert by_team[team_id] == by_team[second_team]
    assert by_team[elsewhere_team] is None


async def test_offline_members_are_skipped_until_they_come_online(
    conn: asyncpg.Connection,
) -> None:
    workspace_id, team_id, [a, b] = await workspace_with_team(conn, online=2)
    late = await create_member(conn, workspace_id)
    await add_team_member(conn, team_id, late, online=False)
    picks = [await assign(conn, workspace_id) for _ in range(4)]
    assert late not in picks
    await conn.execute("update public.team_members set is_online = true where user_id = $1", late)
    # The newcomer has never been assigned, so they are next; then the rotation includes them.
    assert await assign(conn, workspace_id) == late
    assert Counter([await assign(conn, workspace_id) for _ in range(6)]) == {a: 2, b: 2, late: 2}


async def test_a_person_in_several_teams_counts_once(conn: asyncpg.Connection) -> None:
    workspace_id, _, [first, second] = await workspace_with_team(conn, online=2)
    for _ in range(2):
        extra_team = await create_team(conn, workspace_id)
        await add_team_member(conn, extra_team, first, online=True)
    picks = [await assign(conn, workspace_id) for _ in range(8)]
    assert Counter(picks) == {first: 4, second: 4}


async def test_online_in_any_team_of_the_workspace_is_online(conn: asyncpg.Connection) -> None:
    workspace_id, team_id, _ = await workspace_with_team(conn, online=0)
    person = await create_member(conn, workspace_id)
    await add_team_member(conn, team_id, person, online=False)
    other_team = await create_team(conn, workspace_id)
    await add_team_member(conn, other_team, person, online=True)
    assert await assign(conn, workspace_id) == person


async def test_team_members_who_left_the_workspace_are_not_assigned(
    conn: asyncpg.Connection,
) -> None:
    workspace_id, team_id, [stays] = await workspace_with_team(conn, online=1)
    gone = await create_user(conn)  # in the team, but no longer a workspace member
    await add_team_member(conn, team_id, gone, online=True)
    assert {await assign(conn, workspace_id) for _ in range(3)} == {stays}


async def test_capacity_counts_only_pending_handoffs_of_the_workspace(
    conn: asyncpg.Connection,
) -> None:
    owner = await create_user(conn)
    workspace_id = await create_workspace(conn, owner)
    team_id = await create_team(conn, workspace_id)
    busy, free = await create_member(conn, workspace_id), await create_member(conn, workspace_id)
    await add_team_member(conn, team_id, busy, max_open_handoffs=1)
    await add_team_member(conn, team_id, free)
    other_workspace = await create_workspace(conn, owner)
    await add_member(conn, other_workspace, busy, "agent")

    async def task(ws: UUID, type_: str | None, status: str, *, bridge: bool = True) -> None:
        await conn.execute(
            "insert into public.tasks (workspace_id, title, type, status, assigned_to,"
            " created_by_bridge) values ($1, 'T', $2, $3, $4, $5)",
            ws,
            type_,
            status,
            busy,
            bridge,
        )

    # None of these count against the capacity.
    await task(workspace_id, "handoff", "completed")
    await task(workspace_id, "handoff", "pending", bridge=False)
    await task(workspace_id, None, "pending")
    await task(workspace_id, "follow_up", "pending")
    await task(other_workspace, "handoff", "pending")
    picks = [await assign(conn, workspace_id) for _ in range(2)]
    assert sorted(picks, key=str) == sorted([busy, free], key=str)

    await task(workspace_id, "handoff", "pending")  # now `busy` is at capacity
    assert {await assign(conn, workspace_id) for _ in range(3)} == {free}

    await conn.execute("update public.team_members set is_online = false where user_id = $1", free)
    assert await assign(conn, workspace_id) is None


async def test_zero_capacity_means_never(conn: asyncpg.Connection) -> None:
    workspace_id, team_id, _ = await workspace_with_team(conn, online=0)
    person = await create_member(conn, workspace_id)
    await add_team_member(conn, team_id, person, max_open_handoffs=0)
    assert await assign(conn, workspace_id) is None


async def test_nobody_online_gives_null(conn: asyncpg.Connection) -> None:
    workspace_id, _, _ = await workspace_with_team(conn, online=0, offline=2)
    assert await assign(conn, workspace_id) is None
    empty = await create_workspace(conn, await create_user(conn))
    assert await assign(conn, empty) is None


# ---------------------------------------------------------------------------------------------
# Who may call it
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["owner", "admin"])
async def test_an_admin_may_assign_in_their_own_workspace(
    conn: asyncpg.Connection, role: str
) -> None:
    workspace_id, _, members = await workspace_with_team(conn, online=2)
    caller = await create_member(conn, workspace_id, role)
    assert await assign(conn, workspace_id, "authenticated", claims_for(caller)) == members[0]
    assert await assign(conn, workspace_id, "authenticated", claims_for(caller)) == members[1]


async def test_an_agent_cannot_rotate_the_assignee(conn: asyncpg.Connection) -> None:
    # Each call moves the rotation: an agent calling it until a colleague is next would choose
    # who gets the next handoff.
    workspace_id, team_id, members = await workspace_with_team(conn, online=2)
    before = await conn.fetchval(
        "select array_agg(last_assigned_at) from public.team_members where team_id = $1", team_id
    )
    async with acting_as(conn, "authenticated", claims_for(members[0])):
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.fetchval(ASSIGN, workspace_id)
    after = await conn.fetchval(
        "select array_agg(last_assigned_at) from public.team_members where team_id = $1", team_id
    )
    assert before == after


async def test_a_members_fake_handoffs_do_not_fill_a_colleagues_capacity(
    conn: asyncpg.Connection,
) -> None:
    workspace_id, team_id, [colleague] = await workspace_with_team(conn, online=1)
    await conn.execute(
        "update public.team_members set max_open_handoffs = 1 where team_id = $1", team_id
    )
    attacker = await create_member(conn, workspace_id)
    async with conn.transaction():
        await conn.execute(
            "select set_config('request.jwt.claims', $1, true),"
            " set_config('role', 'authenticated', true)",
            json.dumps({"role": "authenticated", **claims_for(attacker)}),
        )
        for _ in range(3):
            await conn.execute(
                "insert into public.tasks (workspace_id, title, type, status, assigned_to,"
                " created_by) values ($1, 'Handoff', 'handoff', 'pending', $2, $3)",
                workspace_id,
                colleague,
                attacker,
            )
    assert await assign(conn, workspace_id) == colleague


@pytest.mark.parametrize(
    "who", ["member_of_other_workspace", "outsider", "no_subject", "anon", "team_member_only"]
)
async def test_callers_outside_the_workspace_are_refused(
    conn: asyncpg.Connection, who: str
) -> None:
    workspace_id, team_id, _ = await workspace_with_team(conn, online=2)
    _, _, [other_member] = await workspace_with_team(conn, online=1)
    lurker = await create_user(conn)
    await add_team_member(conn, team_id, lurker)  # in a team, not in the workspace
    role, claims = {
        "member_of_other_workspace": ("authenticated", claims_for(other_member)),
        "outsider": ("authenticated", claims_for(await create_user(conn))),
        "no_subject": ("authenticated", {}),
        "anon": ("anon", {}),
        "team_member_only": ("authenticated", claims_for(lurker)),
    }[who]
    before = await conn.fetchval(
        "select array_agg(last_assigned_at) from public.team_members where team_id = $1", team_id
    )
    async with acting_as(conn, role, claims):
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.fetchval(ASSIGN, workspace_id)
    after = await conn.fetchval(
        "select array_agg(last_assigned_at) from public.team_members where team_id = $1", team_id
    )
    assert before == after


async def test_service_role_may_assign_in_any_workspace(conn: asyncpg.Connection) -> None:
    workspace_id, _, [person] = await workspace_with_team(conn, online=1)
    async with acting_as(conn, "service_role"):
        assert await conn.fetchval(ASSIGN, workspace_id) == person


# ---------------------------------------------------------------------------------------------
# Concurrency
# ---------------------------------------------------------------------------------------------


@pytest.fixture
async def connections(database_url: str) -> AsyncIterator[list[asyncpg.Connection]]:
    """50 separate connections (not pool slots), closed afterwards."""
    opened = await asyncio.gather(*(asyncpg.connect(database_url) for _ in range(50)))
    try:
        yield list(opened)
    finally:
        await asyncio.gather(*(c.close() for c in opened))


async def test_concurrent_callers_get_a_fair_duplicate_free_rotation(
    conn: asyncpg.Connection, connections: list[asyncpg.Connection]
) -> None:
    workspace_id, _, members = await workspace_with_team(conn, online=5, offline=2)
    admins = [await create_member(conn, workspace_id, "admin") for _ in range(5)]
    gate = asyncio.Event()

    async def call(index: int, c: asyncpg.Connection) -> tuple[datetime, UUID]:
        # Half come through as the service role, half as signed-in admins of the workspace.
        role = "service_role" if index % 2 else "authenticated"
        claims = {"role": role} if index % 2 else {"role": role, **claims_for(admins[index % 5])}
        await gate.wait()
        async with c.transaction():
            await c.execute(
                "select set_config('request.jwt.claims', $1, true), set_config('role', $2, true)",
                json.dumps(claims),
                role,
            )
            user_id = await c.fetchval(ASSIGN, workspace_id)
            assert user_id is not None
            # Still inside the caller's transaction, which holds the workspace's assignment
            # lock: nobody else can have stamped this person since.
            stamp: datetime = await c.fetchval(
                "select max(tm.last_assigned_at) from public.team_members tm"
                " join public.teams t on t.id = tm.team_id"
                " where t.workspace_id = $1 and tm.user_id = $2",
                workspace_id,
                user_id,
            )
        return stamp, user_id

    tasks = [asyncio.create_task(call(i, c)) for i, c in enumerate(connections)]
    await asyncio.sleep(0.05)
    gate.set()
    results = sorted(await asyncio.gather(*tasks))

    stamps = [stamp for stamp, _ in results]
    order = [user_id for _, user_id in results]
    assert len(set(stamps)) == len(stamps), "two calls were stamped at the same instant"
    assert Counter(order) == {m: 10 for m in members}
    for start in range(len(order) - len(members) + 1):
        window = order[start : start + len(members)]
        assert sorted(window, key=str) == sorted(members, key=str), (start, window)
