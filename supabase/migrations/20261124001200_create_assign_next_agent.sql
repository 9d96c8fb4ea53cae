-- =============================================================================================
-- Round-robin assignment of handoffs to online team members.
-- public.assign_next_agent is the API (PostgREST RPC, the worker); the privileged body lives in
-- private because it stamps other people's team_members rows.
-- =============================================================================================

-- SECURITY DEFINER: it updates team_members rows of every candidate, which a plain member may
-- not. It therefore checks the caller itself: roles that bypass RLS anyway (service_role, the
-- database owner) may assign in any workspace; anyone else only in a workspace they administer:
-- each call moves the rotation, so an agent calling it could choose who gets the next handoff.
-- The caller's role is read from the `role` setting (what PostgREST and `set role` change),
-- which a SECURITY DEFINER call does not alter.
create or replace function private.assign_next_agent(p_workspace_id uuid)
returns uuid
language plpgsql
volatile
security definer
set search_path = ''
as $$
declare
  v_caller name := coalesce(nullif(current_setting('role', true), 'none')::name, session_user);
  v_privileged boolean;
  v_user_id uuid;
  v_stamp timestamptz;
begin
  if p_workspace_id is null then
    raise exception 'p_workspace_id must not be null' using errcode = '22004';
  end if;

  select r.rolsuper or r.rolbypassrls into v_privileged
    from pg_catalog.pg_roles r where r.rolname = v_caller;
  if not coalesce(v_privileged, false) and not private.is_workspace_admin(p_workspace_id) then
    raise exception 'permission denied to assign agents in workspace %', p_workspace_id
      using errcode = '42501';
  end if;

  if not exists (select 1 from public.workspaces w where w.id = p_workspace_id) then
    raise exception 'workspace % not found', p_workspace_id using errcode = 'P0002';
  end if;

  -- One assignment at a time per workspace, until the caller's transaction ends. The two-key
  -- form keeps it apart from single-key advisory locks used elsewhere (e.g. per conversation).
  perform pg_catalog.pg_advisory_xact_lock(
    pg_catalog.hashtext('public.assign_next_agent'), pg_catalog.hashtext(p_workspace_id::text));

  -- Each person once, however many of the workspace's teams they are in; only current members
  -- of the workspace; online in at least one team; under their capacity when one is set. Only
  -- the handoffs the bridge created count: members can write tasks, and fake ones must not fill
  -- a colleague's capacity.
  select c.user_id into v_user_id
    from (
      select tm.user_id,
             max(tm.last_assigned_at) as last_assigned_at,
             min(tm.max_open_handoffs) as max_open_handoffs
        from public.team_members tm
        join public.teams t on t.id = tm.team_id
        join public.workspace_members wm
          on wm.workspace_id = t.workspace_id and wm.user_id = tm.user_id
       where t.workspace_id = p_workspace_id
       group by tm.user_id
      having bool_or(tm.is_online)
    ) c
   where c.max_open_handoffs is null
      or c.max_open_handoffs > (
        select count(*) from public.tasks k
         where k.workspace_id = p_workspace_id and k.assigned_to = c.user_id
           and k.type = 'handoff' and k.status = 'pending' and k.created_by_bridge)
   order by c.last_assigned_at asc nulls first, c.user_id asc
   limit 1;

  if v_user_id is null then
    return null;
  end if;

  -- The wall clock, not now(): now() is the caller's transaction start, which can precede an
  -- assignment that committed while this caller waited for the lock. Kept strictly increasing
  -- within the workspace so the rotation order never depends on clock resolution.
  select greatest(pg_catalog.clock_timestamp(), max(tm.last_assigned_at) + interval '1 microsecond')
    into v_stamp
    from public.team_members tm
    join public.teams t on t.id = tm.team_id
   where t.workspace_id = p_workspace_id;

  update public.team_members tm
     set last_assigned_at = v_stamp
    from public.teams t
   where t.id = tm.team_id and t.workspace_id = p_workspace_id and tm.user_id = v_user_id;

  return v_user_id;
end;
$$;
comment on function private.assign_next_agent(uuid) is
  'Body of public.assign_next_agent. SECURITY DEFINER (stamps other members'' rows); checks the caller itself.';
revoke execute on function private.assign_next_agent(uuid) from public, anon;
grant execute on function private.assign_next_agent(uuid) to authenticated, service_role;

create or replace function public.assign_next_agent(p_workspace_id uuid)
returns uuid
language sql
volatile
security invoker
set search_path = ''
as $$
  select private.assign_next_agent(p_workspace_id)
$$;
comment on function public.assign_next_agent(uuid) is
  'Round-robin: the online team member of the workspace assigned least recently (never-assigned first, ties by user id), skipping members at their max_open_handoffs (pending handoff tasks the bridge created); stamps their last_assigned_at and returns their user id, or null when nobody is eligible. Serialised per workspace. Callable by the service role, and by owners and admins for their own workspace (42501 otherwise).';
revoke execute on function public.assign_next_agent(uuid) from public, anon;
grant execute on function public.assign_next_agent(uuid) to authenticated, service_role;
