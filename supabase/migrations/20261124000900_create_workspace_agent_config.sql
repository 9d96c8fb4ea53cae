-- =============================================================================================
-- Per-workspace AI agent settings. With no row, the agent is off and the defaults below apply.
-- =============================================================================================

create table public.workspace_agent_config (
  workspace_id uuid primary key references public.workspaces (id) on delete cascade,
  agent_enabled boolean not null default false,
  conversational_agent_id text not null default 'somnio-sales-v1',
  crm_agents_enabled jsonb not null default '{"order-manager": true}'::jsonb,
  handoff_message text not null default 'Regálame 1 min, ya te comunico con un asesor',
  timer_preset text not null default 'real' check (timer_preset in ('real', 'rapido', 'instantaneo')),
  response_speed numeric(3, 1) not null default 1.0 check (response_speed >= 0),
  reply_window_ms integer not null default 0 check (reply_window_ms >= 0),
  whatsapp_typing_indicator boolean not null default false,
  typing_channel_private boolean not null default false,
  agent_answers_groups boolean not null default false,
  human_takeover text not null default 'pause'
    check (human_takeover in ('off', 'pause', 'until_resumed')),
  human_takeover_minutes integer not null default 30
    check (human_takeover_minutes between 1 and 43200),
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now()
);
comment on table public.workspace_agent_config is
  'AI agent settings of a workspace (one row per workspace; absent = agent disabled, defaults apply).';
comment on column public.workspace_agent_config.agent_enabled is
  'Global switch of the conversational agent; conversations.agent_conversational overrides it per conversation.';
comment on column public.workspace_agent_config.conversational_agent_id is
  'Which engine answers this workspace''s conversations (an engine id known to the worker, not a foreign key).';
comment on column public.workspace_agent_config.crm_agents_enabled is
  'Map of CRM agent id to enabled flag.';
comment on column public.workspace_agent_config.handoff_message is
  'Text sent to the customer when a conversation is handed to a human.';
comment on column public.workspace_agent_config.response_speed is
  'Multiplier on the engine''s reply delays: 1.0 real, 0.2 fast, 0.0 instant.';
comment on column public.workspace_agent_config.reply_window_ms is
  'How long to wait for more customer messages before answering them as one turn (0 = answer at once).';
comment on column public.workspace_agent_config.whatsapp_typing_indicator is
  'Also show WhatsApp''s own typing indicator to the customer while the agent prepares a reply.';
comment on column public.workspace_agent_config.typing_channel_private is
  'Broadcast the inbox''s typing indicator on the private Realtime channel conversation:<id>, which only members of the workspace may join (policies on realtime.messages); false: the public channel of that name, readable by anyone holding the anon key and the conversation id.';

comment on column public.workspace_agent_config.human_takeover is
  'When a human writes to a customer (an echo from the WhatsApp Business app, or public.send_message from the inbox): off = the bot keeps answering; pause = the bot pauses for human_takeover_minutes; until_resumed = the bot pauses until a member calls public.resume_bot.';
comment on column public.workspace_agent_config.human_takeover_minutes is
  'How long a human''s message pauses the bot when human_takeover is pause (from that message; each new one extends it).';

comment on column public.workspace_agent_config.agent_answers_groups is
  'Whether the agent answers WhatsApp group conversations (its replies go to the group, recipient_type group). Off by default: group messages are stored and left to people.';

create trigger workspace_agent_config_set_updated_at
  before update on public.workspace_agent_config
  for each row execute function private.set_updated_at();

alter table public.workspace_agent_config enable row level security;

create policy workspace_agent_config_authenticated_select on public.workspace_agent_config
  for select to authenticated
  using (private.is_workspace_member(workspace_id));

create policy workspace_agent_config_authenticated_insert_admin on public.workspace_agent_config
  for insert to authenticated
  with check (private.is_workspace_admin(workspace_id));

create policy workspace_agent_config_authenticated_update_admin on public.workspace_agent_config
  for update to authenticated
  using (private.is_workspace_admin(workspace_id))
  with check (private.is_workspace_admin(workspace_id));

create policy workspace_agent_config_authenticated_delete_admin on public.workspace_agent_config
  for delete to authenticated
  using (private.is_workspace_admin(workspace_id));
