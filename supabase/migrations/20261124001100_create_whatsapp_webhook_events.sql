-- =============================================================================================
-- Raw WhatsApp webhook deliveries, stored before anything else so nothing received is lost and
-- any delivery can be replayed. Written by the service role only.
-- =============================================================================================

create table public.whatsapp_webhook_events (
  id uuid primary key default gen_random_uuid(),
  workspace_id uuid references public.workspaces (id) on delete set null,
  provider text not null,
  phone_number_ids text[] not null default '{}',
  event_type text,
  wa_message_ids text[] not null default '{}',
  payload jsonb not null,
  status text not null default 'received'
    check (status in ('received', 'processed', 'unroutable', 'failed')),
  error_message text,
  error_sqlstate text,
  attempts int not null default 1 check (attempts >= 1),
  payload_sha256 bytea,
  processed_at timestamptz,
  replayed_at timestamptz,
  created_at timestamptz not null default now()
);
comment on table public.whatsapp_webhook_events is
  'Every WhatsApp webhook POST as received (raw payload), with its processing outcome. Service role only: a payload may hold several workspaces'' customers.';
comment on column public.whatsapp_webhook_events.workspace_id is
  'The workspace the delivery was routed to, when it was one; null when no channel matched or the POST held several workspaces'' numbers.';
comment on column public.whatsapp_webhook_events.provider is
  'Which signature the delivery carried: meta or 360dialog. Deliberately unchecked: a raw event is never rejected.';
comment on column public.whatsapp_webhook_events.phone_number_ids is
  'Business phone_number_ids found in the payload.';
comment on column public.whatsapp_webhook_events.wa_message_ids is
  'wamids of the messages and statuses in the payload.';
comment on column public.whatsapp_webhook_events.status is
  'received: stored, not yet processed; processed; unroutable: no channel matched; failed: the database refused the batch for a data reason (see error_message), kept for `bridge replay`.';
comment on column public.whatsapp_webhook_events.error_message is
  'Why the last attempt failed (status failed), or what a processed delivery could not keep (unknown numbers, wamid conflicts, dropped statuses).';
comment on column public.whatsapp_webhook_events.error_sqlstate is
  'SQLSTATE of the failure while status is failed; null once processed.';
comment on column public.whatsapp_webhook_events.attempts is
  'How many times this body was processed: redeliveries of a failed body and replays count here instead of adding rows.';
comment on column public.whatsapp_webhook_events.payload_sha256 is
  'sha256 of the payload''s jsonb text, set when a delivery fails: a redelivery of the same body finds the failed event by it.';
comment on column public.whatsapp_webhook_events.replayed_at is
  'When `bridge replay` last processed this event again; null when it never did.';

create index whatsapp_webhook_events_workspace_id_created_at_idx
  on public.whatsapp_webhook_events (workspace_id, created_at desc);
create index whatsapp_webhook_events_pending_idx
  on public.whatsapp_webhook_events (created_at) where status in ('received', 'failed');
-- One failed event per body: the key a failing redelivery bumps instead of adding a row.
create unique index whatsapp_webhook_events_failed_payload_key
  on public.whatsapp_webhook_events (payload_sha256) where status = 'failed';

alter table public.whatsapp_webhook_events enable row level security;

-- Readable by no member: one POST may carry several tenants' numbers (Meta batches changes per
-- app), so a raw payload can hold another workspace's customers. Members see what the intake
-- made of it (their conversations and messages); the raw record is the operator's, read with
-- the service role. No policy, and no privilege either.
revoke all on public.whatsapp_webhook_events from anon, authenticated;
