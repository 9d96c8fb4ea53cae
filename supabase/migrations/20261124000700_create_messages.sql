-- =============================================================================================
-- Messages of a conversation, inbound and outbound. `wamid` (WhatsApp message id) is the
-- idempotency key of the intake; `type` is free text so every WhatsApp type, including ones
-- added later, is stored rather than rejected.
-- =============================================================================================

create table public.messages (
  id uuid primary key default gen_random_uuid(),
  workspace_id uuid not null references public.workspaces (id) on delete cascade,
  conversation_id uuid not null,
  wamid text unique,
  direction text not null check (direction in ('inbound', 'outbound')),
  type text not null,
  content jsonb not null default '{}'::jsonb,
  status text check (status in (
    'pending', 'sending', 'sent', 'delivered', 'read', 'played', 'failed', 'unknown', 'skipped')),
  status_timestamp timestamptz,
  error_code text,
  error_message text,
  media_url text,
  media_mime_type text,
  media_filename text,
  template_name text,
  timestamp timestamptz not null default now(),
  sent_by_agent boolean not null default false,
  processed_by_agent boolean not null default true,
  context_wamid text,
  created_at timestamptz not null default now(),
  constraint messages_conversation_fkey foreign key (conversation_id, workspace_id)
    references public.conversations (id, workspace_id) on delete cascade
);
comment on table public.messages is 'Every WhatsApp message of a conversation, in both directions.';
comment on column public.messages.wamid is
  'WhatsApp message id; unique, the intake''s dedupe key. Null for rows not (yet) sent through WhatsApp.';
comment on column public.messages.type is
  'WhatsApp message type as received (text, image, button, interactive, unsupported, ...); deliberately unchecked.';
comment on column public.messages.content is 'Type-specific payload (e.g. {"body": ...} for text).';
comment on column public.messages.status is
  'Outbound delivery status. pending/sending: in the outbox; unknown: the send outcome is unknown and must not be retried blindly; skipped: deliberately not sent.';
comment on column public.messages.timestamp is
  'When the message happened: WhatsApp''s timestamp for inbound, the send time for outbound.';
comment on column public.messages.sent_by_agent is 'True when the AI agent wrote this outbound message.';
comment on column public.messages.processed_by_agent is
  'False for inbound messages the agent has not handled yet; the intake inserts inbound rows with false.';
comment on column public.messages.context_wamid is 'The wamid this message replies to, if any.';

create index messages_conversation_id_timestamp_idx
  on public.messages (conversation_id, timestamp desc);
create index messages_unprocessed_inbound_idx
  on public.messages (conversation_id, timestamp)
  where direction = 'inbound' and not processed_by_agent;
create index messages_workspace_id_idx on public.messages (workspace_id);

-- ---------------------------------------------------------------------------------------------
-- RLS: members read their workspace's messages; owners and admins delete them.
-- Members write no column: every row is the intake's (inbound, echoes) or the worker's (the
-- outbox), and each column is provenance the bridge relies on: wamid is the intake's dedupe key
-- (a member choosing one could make another tenant's message look like a duplicate), direction,
-- status and processed_by_agent decide what the worker answers and sends, sent_by_agent says who
-- wrote a reply. Column grants cover the columns added later (the outbox's) too.
-- ---------------------------------------------------------------------------------------------
alter table public.messages enable row level security;

create policy messages_authenticated_select on public.messages
  for select to authenticated
  using (private.is_workspace_member(workspace_id));

create policy messages_authenticated_delete_admin on public.messages
  for delete to authenticated
  using (private.is_workspace_admin(workspace_id));

revoke insert, update on public.messages from anon, authenticated;
