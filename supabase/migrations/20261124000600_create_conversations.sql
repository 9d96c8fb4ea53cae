-- =============================================================================================
-- Conversations: one per WhatsApp customer per workspace, the inbox rows.
-- Composite foreign keys (id, workspace_id) keep every link inside one workspace, so no row can
-- point at another tenant's contact, channel or team, whoever writes it.
-- =============================================================================================

create table public.conversations (
  id uuid primary key default gen_random_uuid(),
  workspace_id uuid not null references public.workspaces (id) on delete cascade,
  channel_id uuid,
  contact_id uuid,
  phone text,
  bsuid text,
  phone_number_id text not null,
  profile_name text,
  status text not null default 'active' check (status in ('active', 'archived')),
  is_read boolean not null default false,
  unread_count integer not null default 0,
  last_customer_message_at timestamptz,
  last_message_at timestamptz,
  last_message_preview text,
  assigned_to uuid references auth.users (id) on delete set null,
  team_id uuid,
  agent_conversational boolean,
  agent_crm boolean,
  group_id text,
  bot_paused_until timestamptz,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  unique (id, workspace_id),
  constraint conversations_phone_or_bsuid_check
    check (phone is not null or bsuid is not null or group_id is not null),
  constraint conversations_channel_fkey foreign key (channel_id, workspace_id)
    references public.whatsapp_channels (id, workspace_id) on delete set null (channel_id),
  constraint conversations_contact_fkey foreign key (contact_id, workspace_id)
    references public.contacts (id, workspace_id) on delete set null (contact_id),
  constraint conversations_team_fkey foreign key (team_id, workspace_id)
    references public.teams (id, workspace_id) on delete set null (team_id)
);
comment on table public.conversations is
  'The WhatsApp conversation with one customer in one workspace (inbox row).';
comment on column public.conversations.channel_id is
  'The workspace''s channel the worker replies from; null (channel deleted) means it cannot reply.';
comment on column public.conversations.phone is
  'Customer phone, E.164 digits as WhatsApp gives them; null when only the BSUID is known.';
comment on column public.conversations.bsuid is
  'Customer business-scoped user id (webhook user_id); null when only the phone is known.';
comment on column public.conversations.phone_number_id is
  'The business number (whatsapp_channels.phone_number_id) the conversation started on, as the intake saw it; informative only: replies go out through channel_id.';
comment on column public.conversations.last_customer_message_at is
  'Time of the last inbound message: opens the 24 h customer service window.';
comment on column public.conversations.agent_conversational is
  'Per-conversation override of the conversational AI agent: null = inherit the workspace switch, false = off, true = on.';
comment on column public.conversations.agent_crm is
  'Per-conversation override of the CRM agents: null = inherit, false = off, true = on.';
comment on column public.conversations.group_id is
  'The WhatsApp group this conversation is (messages with group_id); null for a one-to-one conversation. A group conversation has no phone or BSUID of its own: each message records its sender.';
comment on column public.conversations.bot_paused_until is
  'The bot stays silent until then because a human wrote to the customer (workspace_agent_config.human_takeover; infinity: until a member resumes it with public.resume_bot). Written by the bridge only; agent_conversational stays the member''s own switch.';

create unique index conversations_workspace_id_phone_key
  on public.conversations (workspace_id, phone) where phone is not null;
create unique index conversations_workspace_id_bsuid_key
  on public.conversations (workspace_id, bsuid) where bsuid is not null;
create unique index conversations_workspace_id_group_id_key
  on public.conversations (workspace_id, group_id) where group_id is not null;
create index conversations_inbox_idx
  on public.conversations (workspace_id, last_message_at desc);
create index conversations_workspace_id_status_idx on public.conversations (workspace_id, status);
create index conversations_contact_id_idx
  on public.conversations (contact_id) where contact_id is not null;
create index conversations_assigned_to_idx
  on public.conversations (assigned_to) where assigned_to is not null;
create index conversations_team_id_idx on public.conversations (team_id) where team_id is not null;
create index conversations_channel_id_idx
  on public.conversations (channel_id) where channel_id is not null;

create trigger conversations_set_updated_at
  before update on public.conversations
  for each row execute function private.set_updated_at();

-- A conversation written without its channel gets the one of its own workspace with the number
-- it names, if any: a number is never looked up across workspaces, so naming another tenant's
-- number leaves the conversation without a channel (and the worker unable to send).
create or replace function private.fill_conversation_channel()
returns trigger
language plpgsql
set search_path = ''
as $$
begin
  if new.channel_id is null then
    select ch.id into new.channel_id
      from public.whatsapp_channels ch
     where ch.workspace_id = new.workspace_id and ch.phone_number_id = new.phone_number_id;
  end if;
  return new;
end;
$$;
comment on function private.fill_conversation_channel() is
  'BEFORE INSERT trigger on conversations: fills channel_id from phone_number_id, within the workspace only.';
revoke execute on function private.fill_conversation_channel() from public, anon, authenticated;

create trigger conversations_fill_channel
  before insert on public.conversations
  for each row execute function private.fill_conversation_channel();

-- ---------------------------------------------------------------------------------------------
-- RLS: members read and update their workspace's conversations; owners and admins delete them.
-- Conversations are created by the intake (the service role), never through the API.
-- What members may write (column grants; RLS picks the rows): the inbox's own state (status,
-- is_read, unread_count), assignment (assigned_to, team_id), the agent overrides
-- (agent_conversational, agent_crm), the linked contact and the display name. Routing and
-- identity (workspace_id, channel_id, phone_number_id, phone, bsuid) and the last-message fields
-- are the intake's: the worker sends from the conversation's channel_id, so no member may move
-- a conversation onto another number.
-- ---------------------------------------------------------------------------------------------
alter table public.conversations enable row level security;

create policy conversations_authenticated_select on public.conversations
  for select to authenticated
  using (private.is_workspace_member(workspace_id));

create policy conversations_authenticated_update on public.conversations
  for update to authenticated
  using (private.is_workspace_member(workspace_id))
  with check (private.is_workspace_member(workspace_id));

create policy conversations_authenticated_delete_admin on public.conversations
  for delete to authenticated
  using (private.is_workspace_admin(workspace_id));

revoke insert, update on public.conversations from anon, authenticated;
grant update (status, is_read, unread_count, assigned_to, team_id, agent_conversational, agent_crm,
  contact_id, profile_name) on public.conversations to authenticated;
