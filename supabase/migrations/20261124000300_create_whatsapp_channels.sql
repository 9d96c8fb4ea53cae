-- =============================================================================================
-- WhatsApp business numbers (channels) and their credentials.
-- The channel row is routing data every member may read; tokens and keys live in a separate
-- table in `private`, which the API roles cannot reach at all. Only the service role reads them.
-- =============================================================================================

create table public.whatsapp_channels (
  id uuid primary key default gen_random_uuid(),
  workspace_id uuid not null references public.workspaces (id) on delete cascade,
  phone_number_id text not null unique,
  display_phone_number text,
  provider text not null default 'meta' check (provider in ('meta', '360dialog')),
  api_base_url text,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  unique (id, workspace_id)
);
comment on table public.whatsapp_channels is
  'A WhatsApp Business number of a workspace. Webhooks are routed by (phone_number_id, provider).';
comment on column public.whatsapp_channels.phone_number_id is
  'The business number''s ID from webhook metadata (Meta Graph API phone number ID).';
comment on column public.whatsapp_channels.provider is
  'Who hosts the Cloud API for this number: meta (graph.facebook.com) or 360dialog.';
comment on column public.whatsapp_channels.api_base_url is
  'Base URL of the provider API for this number; null means the bridge''s configured default. Written by the service role only.';
create index whatsapp_channels_workspace_id_idx on public.whatsapp_channels (workspace_id);

create trigger whatsapp_channels_set_updated_at
  before update on public.whatsapp_channels
  for each row execute function private.set_updated_at();

alter table public.whatsapp_channels enable row level security;

create policy whatsapp_channels_authenticated_select on public.whatsapp_channels
  for select to authenticated
  using (private.is_workspace_member(workspace_id));

create policy whatsapp_channels_authenticated_insert_admin on public.whatsapp_channels
  for insert to authenticated
  with check (private.is_workspace_admin(workspace_id));

create policy whatsapp_channels_authenticated_update_admin on public.whatsapp_channels
  for update to authenticated
  using (private.is_workspace_admin(workspace_id))
  with check (private.is_workspace_admin(workspace_id));

create policy whatsapp_channels_authenticated_delete_admin on public.whatsapp_channels
  for delete to authenticated
  using (private.is_workspace_admin(workspace_id));

-- What members may write (RLS above picks the rows, these grants the columns): owners and admins
-- register a number (workspace_id, phone_number_id, display_phone_number, provider) and change
-- its display number and provider. Where the worker sends (api_base_url) is the operator's: the
-- service role only, so no tenant can point the bridge's token at a host of its choosing.
revoke insert, update on public.whatsapp_channels from anon, authenticated;
grant insert (workspace_id, phone_number_id, display_phone_number, provider)
  on public.whatsapp_channels to authenticated;
grant update (display_phone_number, provider) on public.whatsapp_channels to authenticated;

-- ---------------------------------------------------------------------------------------------
-- Credentials: one row per channel, absent when the bridge's environment defaults apply.
-- ---------------------------------------------------------------------------------------------
create table private.whatsapp_channel_credentials (
  channel_id uuid primary key references public.whatsapp_channels (id) on delete cascade,
  access_token text,
  api_key text,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now()
);
comment on table private.whatsapp_channel_credentials is
  'Secrets of a WhatsApp channel. Readable by the service role only; null columns fall back to the bridge''s environment.';
comment on column private.whatsapp_channel_credentials.access_token is
  'Meta Cloud API bearer token (Authorization: Bearer).';
comment on column private.whatsapp_channel_credentials.api_key is
  '360dialog API key (D360-API-KEY header).';

create trigger whatsapp_channel_credentials_set_updated_at
  before update on private.whatsapp_channel_credentials
  for each row execute function private.set_updated_at();

-- Defence in depth: RLS on with no policies, so even a stray grant would expose nothing.
alter table private.whatsapp_channel_credentials enable row level security;
revoke all on private.whatsapp_channel_credentials from public, anon, authenticated;
grant select, insert, update, delete on private.whatsapp_channel_credentials to service_role;
