-- =============================================================================================
-- AI agent sessions (one active per conversation and agent) and their turns.
-- =============================================================================================

create table public.agent_sessions (
  id uuid primary key default gen_random_uuid(),
  workspace_id uuid not null references public.workspaces (id) on delete cascade,
  agent_id text not null,
  conversation_id uuid not null,
  contact_id uuid,
  version integer not null default 1,
  status text not null default 'active'
    check (status in ('active', 'paused', 'closed', 'handed_off')),
  current_mode text not null default 'conversacion',
  state jsonb not null default '{}'::jsonb,
  closed_at timestamptz,
  close_reason text,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  last_activity_at timestamptz not null default now(),
  unique (id, workspace_id),
  constraint agent_sessions_conversation_fkey foreign key (conversation_id, workspace_id)
    references public.conversations (id, workspace_id) on delete cascade,
  constraint agent_sessions_contact_fkey foreign key (contact_id, workspace_id)
    references public.contacts (id, workspace_id) on delete set null (contact_id)
);
comment on table public.agent_sessions is
  'The state of one AI agent in one conversation. At most one active session per (conversation, agent); closed and handed-off ones stay as history.';
comment on column public.agent_sessions.agent_id is 'Engine id (e.g. somnio-sales-v1); not a foreign key.';
comment on column public.agent_sessions.version is 'Optimistic lock: incremented by every state write.';
comment on column public.agent_sessions.current_mode is 'The engine''s state-machine mode.';
comment on column public.agent_sessions.state is
  'Engine state (intents seen, templates sent, captured customer data, ...).';

create unique index agent_sessions_one_active_key
  on public.agent_sessions (conversation_id, agent_id) where status = 'active';
create index agent_sessions_conversation_id_idx on public.agent_sessions (conversation_id);
create index agent_sessions_workspace_id_status_idx on public.agent_sessions (workspace_id, status);
create index agent_sessions_workspace_id_last_activity_at_idx
  on public.agent_sessions (workspace_id, last_activity_at desc);
create index agent_sessions_contact_id_idx
  on public.agent_sessions (contact_id) where contact_id is not null;

create trigger agent_sessions_set_updated_at
  before update on public.agent_sessions
  for each row execute function private.set_updated_at();

create table public.agent_turns (
  id uuid primary key default gen_random_uuid(),
  workspace_id uuid not null,
  session_id uuid not null,
  turn_number integer not null,
  role text not null check (role in ('user', 'assistant', 'system')),
  content text not null,
  intent_detected text,
  confidence numeric(5, 2),
  tools_called jsonb not null default '[]'::jsonb,
  tokens_used integer not null default 0,
  created_at timestamptz not null default now(),
  unique (session_id, turn_number),
  constraint agent_turns_session_fkey foreign key (session_id, workspace_id)
    references public.agent_sessions (id, workspace_id) on delete cascade
);
comment on table public.agent_turns is
  'The transcript of an agent session, in turn order; the conversation history the engine sees.';
comment on column public.agent_turns.workspace_id is
  'Copied from the session (filled in when omitted) so access checks need no join.';
comment on column public.agent_turns.confidence is 'Intent confidence, 0-100.';
create index agent_turns_session_id_created_at_idx
  on public.agent_turns (session_id, created_at desc);
create index agent_turns_workspace_id_idx on public.agent_turns (workspace_id);

-- Fill workspace_id from the session when the writer leaves it out. The session is read as the
-- caller, so one the caller cannot see is reported as missing.
create or replace function private.fill_agent_turn_workspace()
returns trigger
language plpgsql
set search_path = ''
as $$
begin
  if new.workspace_id is null then
    select s.workspace_id into new.workspace_id
      from public.agent_sessions s where s.id = new.session_id;
    if new.workspace_id is null then
      raise exception 'agent session % not found', new.session_id
        using errcode = '23503', hint = 'pass an existing session_id (or workspace_id)';
    end if;
  end if;
  return new;
end;
$$;
comment on function private.fill_agent_turn_workspace() is
  'BEFORE INSERT trigger on agent_turns: copies workspace_id from the session when omitted.';
revoke execute on function private.fill_agent_turn_workspace() from public, anon, authenticated;

create trigger agent_turns_fill_workspace
  before insert on public.agent_turns
  for each row execute function private.fill_agent_turn_workspace();

-- ---------------------------------------------------------------------------------------------
-- RLS: members read, start and update sessions and append turns; history is never deleted by
-- the API (it goes with its conversation).
-- ---------------------------------------------------------------------------------------------
alter table public.agent_sessions enable row level security;

create policy agent_sessions_authenticated_select on public.agent_sessions
  for select to authenticated
  using (private.is_workspace_member(workspace_id));

create policy agent_sessions_authenticated_insert on public.agent_sessions
  for insert to authenticated
  with check (private.is_workspace_member(workspace_id));

create policy agent_sessions_authenticated_update on public.agent_sessions
  for update to authenticated
  using (private.is_workspace_member(workspace_id))
  with check (private.is_workspace_member(workspace_id));

alter table public.agent_turns enable row level security;

create policy agent_turns_authenticated_select on public.agent_turns
  for select to authenticated
  using (private.is_workspace_member(workspace_id));

create policy agent_turns_authenticated_insert on public.agent_turns
  for insert to authenticated
  with check (private.is_workspace_member(workspace_id));
