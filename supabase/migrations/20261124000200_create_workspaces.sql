-- =============================================================================================
-- Workspaces (tenants), their members, and the membership checks every policy uses.
-- =============================================================================================

create table public.workspaces (
  id uuid primary key default gen_random_uuid(),
  name text not null,
  slug text not null unique,
  owner_id uuid not null references auth.users (id) on delete cascade,
  settings jsonb not null default '{}'::jsonb,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now()
);
comment on table public.workspaces is
  'A tenant: one business with its WhatsApp channels, contacts, conversations and team.';
comment on column public.workspaces.settings is
  'Free-form UI settings readable by every member. Never store credentials here: they live in private.whatsapp_channel_credentials.';
create index workspaces_owner_id_idx on public.workspaces (owner_id);

create trigger workspaces_set_updated_at
  before update on public.workspaces
  for each row execute function private.set_updated_at();

create table public.workspace_members (
  id uuid primary key default gen_random_uuid(),
  workspace_id uuid not null references public.workspaces (id) on delete cascade,
  user_id uuid not null references auth.users (id) on delete cascade,
  role text not null default 'agent' check (role in ('owner', 'admin', 'agent')),
  permissions jsonb not null default '{}'::jsonb,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  unique (workspace_id, user_id)
);
comment on table public.workspace_members is
  'Who belongs to which workspace, and as what: owner and admin manage the workspace, agent works in it.';
create index workspace_members_user_id_idx on public.workspace_members (user_id);

create trigger workspace_members_set_updated_at
  before update on public.workspace_members
  for each row execute function private.set_updated_at();

-- ---------------------------------------------------------------------------------------------
-- Membership checks. SECURITY DEFINER because policies call them: run as the caller they would
-- read workspace_members through its own policies, which call them again (infinite recursion).
-- They only ever answer about the calling user (auth.uid()), so they reveal nothing else.
-- ---------------------------------------------------------------------------------------------
create or replace function private.is_workspace_member(ws uuid)
returns boolean
language sql
stable
security definer
set search_path = ''
as $$
  select exists (
    select 1 from public.workspace_members m
     where m.workspace_id = ws and m.user_id = (select auth.uid()))
$$;
comment on function private.is_workspace_member(uuid) is
  'True when the calling user (auth.uid()) is a member of the workspace. SECURITY DEFINER so policies do not recurse.';

create or replace function private.is_workspace_admin(ws uuid)
returns boolean
language sql
stable
security definer
set search_path = ''
as $$
  select exists (
    select 1 from public.workspace_members m
     where m.workspace_id = ws and m.user_id = (select auth.uid())
       and m.role in ('owner', 'admin'))
$$;
comment on function private.is_workspace_admin(uuid) is
  'True when the calling user is an owner or admin of the workspace. SECURITY DEFINER so policies do not recurse.';

create or replace function private.is_workspace_owner(ws uuid)
returns boolean
language sql
stable
security definer
set search_path = ''
as $$
  select exists (
    select 1 from public.workspace_members m
     where m.workspace_id = ws and m.user_id = (select auth.uid()) and m.role = 'owner')
$$;
comment on function private.is_workspace_owner(uuid) is
  'True when the calling user is an owner of the workspace. SECURITY DEFINER so policies do not recurse.';

revoke execute on function private.is_workspace_member(uuid), private.is_workspace_admin(uuid),
  private.is_workspace_owner(uuid) from public, anon;
grant execute on function private.is_workspace_member(uuid), private.is_workspace_admin(uuid),
  private.is_workspace_owner(uuid) to authenticated, service_role;

-- The creator of a workspace becomes its owner member in the same transaction, whoever inserts
-- it. SECURITY DEFINER: under RLS the creator may not add members before being one.
create or replace function private.add_workspace_owner_member()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  insert into public.workspace_members (workspace_id, user_id, role)
  values (new.id, new.owner_id, 'owner')
  on conflict (workspace_id, user_id) do update set role = 'owner';
  return null;
end;
$$;
comment on function private.add_workspace_owner_member() is
  'AFTER INSERT trigger on workspaces: makes owner_id an owner member. SECURITY DEFINER because the creator is not a member yet.';
revoke execute on function private.add_workspace_owner_member() from public, anon, authenticated;

create trigger workspaces_add_owner_member
  after insert on public.workspaces
  for each row execute function private.add_workspace_owner_member();

-- ---------------------------------------------------------------------------------------------
-- RLS: members read their workspace; any signed-in user may create a workspace they own; only
-- its owner changes or deletes it. Admins manage members, but only an owner grants or changes
-- the owner role, and owner memberships are never deleted through the API (the workspace always
-- keeps its owner); anyone else may leave (delete their own membership).
-- ---------------------------------------------------------------------------------------------
alter table public.workspaces enable row level security;

create policy workspaces_authenticated_select on public.workspaces
  for select to authenticated
  using (private.is_workspace_member(id) or owner_id = (select auth.uid()));

create policy workspaces_authenticated_insert on public.workspaces
  for insert to authenticated
  with check (owner_id = (select auth.uid()));

create policy workspaces_authenticated_update_owner on public.workspaces
  for update to authenticated
  using (owner_id = (select auth.uid()))
  with check (owner_id = (select auth.uid()));

create policy workspaces_authenticated_delete_owner on public.workspaces
  for delete to authenticated
  using (owner_id = (select auth.uid()));

alter table public.workspace_members enable row level security;

create policy workspace_members_authenticated_select on public.workspace_members
  for select to authenticated
  using (private.is_workspace_member(workspace_id));

create policy workspace_members_authenticated_insert_admin on public.workspace_members
  for insert to authenticated
  with check (
    private.is_workspace_admin(workspace_id)
    and (role <> 'owner' or private.is_workspace_owner(workspace_id)));

create policy workspace_members_authenticated_update_admin on public.workspace_members
  for update to authenticated
  using (
    private.is_workspace_admin(workspace_id)
    and (role <> 'owner' or private.is_workspace_owner(workspace_id)))
  with check (
    private.is_workspace_admin(workspace_id)
    and (role <> 'owner' or private.is_workspace_owner(workspace_id)));

create policy workspace_members_authenticated_delete on public.workspace_members
  for delete to authenticated
  using (
    role <> 'owner'
    and (private.is_workspace_admin(workspace_id) or user_id = (select auth.uid())));
