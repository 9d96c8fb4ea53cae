-- =============================================================================================
-- Teams and their members: the pool the round-robin assigns handoffs from.
-- =============================================================================================

create table public.teams (
  id uuid primary key default gen_random_uuid(),
  workspace_id uuid not null references public.workspaces (id) on delete cascade,
  name text not null,
  is_default boolean not null default false,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  unique (workspace_id, name),
  unique (id, workspace_id)
);
comment on table public.teams is 'A group of workspace members that receives conversations and handoffs.';

create trigger teams_set_updated_at
  before update on public.teams
  for each row execute function private.set_updated_at();

create table public.team_members (
  id uuid primary key default gen_random_uuid(),
  team_id uuid not null references public.teams (id) on delete cascade,
  user_id uuid not null references auth.users (id) on delete cascade,
  is_online boolean not null default false,
  last_assigned_at timestamptz,
  max_open_handoffs integer check (max_open_handoffs is null or max_open_handoffs >= 0),
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  unique (team_id, user_id)
);
comment on table public.team_members is 'Membership of a user in a team, with the round-robin state.';
comment on column public.team_members.is_online is
  'Manual availability toggle: only online members receive handoffs.';
comment on column public.team_members.last_assigned_at is
  'When public.assign_next_agent last picked this user (stamped on all their rows in the workspace); written by it only.';
comment on column public.team_members.max_open_handoffs is
  'Optional capacity: the user is skipped while this many pending handoff tasks the bridge created are assigned to them. Null = unlimited.';
create index team_members_user_id_idx on public.team_members (user_id);
create index team_members_online_idx on public.team_members (team_id) where is_online;

create trigger team_members_set_updated_at
  before update on public.team_members
  for each row execute function private.set_updated_at();

-- SECURITY DEFINER for the same reason as private.is_workspace_member: team_members policies
-- need the team's workspace, and reading teams as the caller would go through teams' policies.
create or replace function private.workspace_of_team(team uuid)
returns uuid
language sql
stable
security definer
set search_path = ''
as $$
  select t.workspace_id from public.teams t where t.id = team
$$;
comment on function private.workspace_of_team(uuid) is
  'The workspace a team belongs to (null for an unknown team). SECURITY DEFINER so policies do not recurse.';
revoke execute on function private.workspace_of_team(uuid) from public, anon;
grant execute on function private.workspace_of_team(uuid) to authenticated, service_role;

-- A member who is not an admin may update only the is_online flag of their own rows: RLS
-- selects the rows, this trigger limits the columns. Privileged roles (service role, the
-- round-robin function's owner) are not restricted.
create or replace function private.guard_team_member_update()
returns trigger
language plpgsql
set search_path = ''
as $$
begin
  if current_user in ('anon', 'authenticated')
     and not private.is_workspace_admin(private.workspace_of_team(old.team_id))
     and (new.id is distinct from old.id
          or new.team_id is distinct from old.team_id
          or new.user_id is distinct from old.user_id
          or new.last_assigned_at is distinct from old.last_assigned_at
          or new.max_open_handoffs is distinct from old.max_open_handoffs
          or new.created_at is distinct from old.created_at) then
    raise exception 'only is_online may be changed on your own team membership'
      using errcode = '42501';
  end if;
  return new;
end;
$$;
comment on function private.guard_team_member_update() is
  'BEFORE UPDATE trigger on team_members: non-admin members may only toggle is_online.';
revoke execute on function private.guard_team_member_update() from public, anon, authenticated;

create trigger team_members_guard_update
  before update on public.team_members
  for each row execute function private.guard_team_member_update();

-- ---------------------------------------------------------------------------------------------
-- RLS: members read; owners and admins write; a member updates their own rows (is_online only).
-- ---------------------------------------------------------------------------------------------
alter table public.teams enable row level security;

create policy teams_authenticated_select on public.teams
  for select to authenticated
  using (private.is_workspace_member(workspace_id));

create policy teams_authenticated_insert_admin on public.teams
  for insert to authenticated
  with check (private.is_workspace_admin(workspace_id));

create policy teams_authenticated_update_admin on public.teams
  for update to authenticated
  using (private.is_workspace_admin(workspace_id))
  with check (private.is_workspace_admin(workspace_id));

create policy teams_authenticated_delete_admin on public.teams
  for delete to authenticated
  using (private.is_workspace_admin(workspace_id));

alter table public.team_members enable row level security;

create policy team_members_authenticated_select on public.team_members
  for select to authenticated
  using (private.is_workspace_member(private.workspace_of_team(team_id)));

create policy team_members_authenticated_insert_admin on public.team_members
  for insert to authenticated
  with check (private.is_workspace_admin(private.workspace_of_team(team_id)));

create policy team_members_authenticated_update on public.team_members
  for update to authenticated
  using (
    private.is_workspace_admin(private.workspace_of_team(team_id))
    or (user_id = (select auth.uid())
        and private.is_workspace_member(private.workspace_of_team(team_id))))
  with check (
    private.is_workspace_admin(private.workspace_of_team(team_id))
    or (user_id = (select auth.uid())
        and private.is_workspace_member(private.workspace_of_team(team_id))));

create policy team_members_authenticated_delete_admin on public.team_members
  for delete to authenticated
  using (private.is_workspace_admin(private.workspace_of_team(team_id)));

-- What members may write (column grants; RLS and the guard trigger pick the rows and narrow
-- agents to their own is_online): admins add people to teams and set their capacity; the
-- round-robin state (last_assigned_at) is written only by public.assign_next_agent, so nobody
-- steers who gets the next handoff by editing it.
revoke insert, update on public.team_members from anon, authenticated;
grant insert (team_id, user_id, is_online, max_open_handoffs) on public.team_members to authenticated;
grant update (team_id, user_id, is_online, max_open_handoffs) on public.team_members to authenticated;
