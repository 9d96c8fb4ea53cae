"""A database in service: another workspace's past customers, written before a benchmark and
analyzed, so the planner sees tables of a realistic size and plans with statistics, as it would
in production, instead of the empty, never-analyzed tables of a database created a moment ago
(whose plans are made on guesses).

Per customer: a contact, a conversation, five messages (three inbound, two replies, all
processed), a closed session with four turns.
"""

from __future__ import annotations

import asyncpg

from devstack.workspaces import create_workspace

HISTORY_SQL = """
with customers as (
  select i, gen_random_uuid() as contact_id, gen_random_uuid() as conversation_id,
         gen_random_uuid() as session_id, '579' || lpad(i::text, 9, '0') as phone
    from generate_series(1, $3::int) as i
), contacts as (
  insert into public.contacts (id, workspace_id, name, phone)
  select contact_id, $1, 'Cliente ' || i, phone from customers
), conversations as (
  insert into public.conversations
    (id, workspace_id, channel_id, phone_number_id, phone, contact_id, last_message_at)
  select conversation_id, $1, $2, $4, phone, contact_id, now() - make_interval(mins => i)
    from customers
), sessions as (
  insert into public.agent_sessions
    (id, workspace_id, agent_id, conversation_id, contact_id, status)
  select session_id, $1, 'diagnostic-v1', conversation_id, contact_id, 'closed' from customers
)
select count(*) from customers
"""

MESSAGES_SQL = """
insert into public.messages
  (workspace_id, conversation_id, wamid, direction, type, content, status, timestamp,
   processed_by_agent, sent_by_agent)
select c.workspace_id, c.id, 'wamid.HISTORY' || replace(c.id::text, '-', '') || n,
       case when n % 2 = 1 then 'inbound' else 'outbound' end, 'text',
       jsonb_build_object('body', 'mensaje ' || n),
       case when n % 2 = 1 then null else 'read' end,
       c.last_message_at - make_interval(mins => 6 - n), true, n % 2 = 0
  from public.conversations c, generate_series(1, 5) as n
 where c.workspace_id = $1
"""

TURNS_SQL = """
insert into public.agent_turns (session_id, turn_number, role, content)
select s.id, n, case when n % 2 = 1 then 'user' else 'assistant' end, 'turno ' || n
  from public.agent_sessions s, generate_series(1, 4) as n
 where s.workspace_id = $1
"""


async def add_history(database_url: str, customers: int) -> None:
    if customers <= 0:
        return
    conn = await asyncpg.connect(database_url)
    try:
        async with conn.transaction():
            ws = await create_workspace(conn, "History")
            await conn.fetchval(HISTORY_SQL, ws.id, ws.channel_id, customers, ws.phone_number_id)
            await conn.execute(MESSAGES_SQL, ws.id)
            await conn.execute(TURNS_SQL, ws.id)
        await conn.execute("analyze")
    finally:
        await conn.close()
