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
  'Every WhatsApp webhook POST as received (raw payload), with its processing outcome. Service role writes; workspace admins may read.';
comment on column public.whatsapp_webhook_events.workspace_id is
  'The workspace the delivery was routed to; null while unrouted or when no channel matched.';
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

-- Payloads hold customers' personal data: only owners and admins of the routed workspace read
-- them. No insert, update or delete policy: the API roles never write here.
create policy whatsapp_webhook_events_authenticated_select_admin on public.whatsapp_webhook_events
  for select to authenticated
  using (private.is_workspace_admin(workspace_id));
