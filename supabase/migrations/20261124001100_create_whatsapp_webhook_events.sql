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
  processed_at timestamptz,
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
  'received: stored, not yet processed; processed; unroutable: no channel matched; failed: processing raised (see error_message).';

create index whatsapp_webhook_events_workspace_id_created_at_idx
  on public.whatsapp_webhook_events (workspace_id, created_at desc);
create index whatsapp_webhook_events_pending_idx
  on public.whatsapp_webhook_events (created_at) where status in ('received', 'failed');

alter table public.whatsapp_webhook_events enable row level security;

-- Readable by no member: one POST may carry several tenants' numbers (Meta batches changes per
-- app), so a raw payload can hold another workspace's customers. Members see what the intake
-- made of it (their conversations and messages); the raw record is the operator's, read with
-- the service role. No policy, and no privilege either.
revoke all on public.whatsapp_webhook_events from anon, authenticated;
