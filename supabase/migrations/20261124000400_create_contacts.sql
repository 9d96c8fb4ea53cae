-- =============================================================================================
-- Contacts: the workspace's customers. A WhatsApp customer is known by phone (wa_id) and/or by
-- business-scoped user id (BSUID); at least one is required, and each is unique per workspace.
-- =============================================================================================

create table public.contacts (
  id uuid primary key default gen_random_uuid(),
  workspace_id uuid not null references public.workspaces (id) on delete cascade,
  name text not null,
  phone text,
  bsuid text,
  email text,
  address text,
  city text,
  custom_fields jsonb not null default '{}'::jsonb,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  unique (id, workspace_id),
  constraint contacts_phone_or_bsuid_check check (phone is not null or bsuid is not null)
);
comment on table public.contacts is 'A customer of the workspace (CRM contact).';
comment on column public.contacts.phone is
  'E.164 digits without "+", as WhatsApp gives them (e.g. 573001112233); null when only the BSUID is known.';
comment on column public.contacts.bsuid is
  'WhatsApp business-scoped user id (the webhook''s user_id); null when only the phone is known.';

create unique index contacts_workspace_id_phone_key
  on public.contacts (workspace_id, phone) where phone is not null;
create unique index contacts_workspace_id_bsuid_key
  on public.contacts (workspace_id, bsuid) where bsuid is not null;
create index contacts_workspace_id_updated_at_idx on public.contacts (workspace_id, updated_at desc);
create index contacts_custom_fields_idx on public.contacts using gin (custom_fields);

create trigger contacts_set_updated_at
  before update on public.contacts
  for each row execute function private.set_updated_at();

alter table public.contacts enable row level security;

create policy contacts_authenticated_select on public.contacts
  for select to authenticated
  using (private.is_workspace_member(workspace_id));

create policy contacts_authenticated_insert on public.contacts
  for insert to authenticated
  with check (private.is_workspace_member(workspace_id));

create policy contacts_authenticated_update on public.contacts
  for update to authenticated
  using (private.is_workspace_member(workspace_id))
  with check (private.is_workspace_member(workspace_id));

create policy contacts_authenticated_delete on public.contacts
  for delete to authenticated
  using (private.is_workspace_member(workspace_id));
