-- =============================================================================================
-- Tasks for humans (follow-ups, handoffs). A task may link a conversation and a contact at the
-- same time: a handoff task carries both, so there is no "at most one entity" rule.
-- =============================================================================================

create table public.tasks (
  id uuid primary key default gen_random_uuid(),
  workspace_id uuid not null references public.workspaces (id) on delete cascade,
  title text not null,
  description text,
  due_date timestamptz,
  priority text not null default 'medium' check (priority in ('low', 'medium', 'high')),
  status text not null default 'pending' check (status in ('pending', 'completed')),
  type text,
  conversation_id uuid,
  contact_id uuid,
  assigned_to uuid references auth.users (id) on delete set null,
  created_by uuid references auth.users (id) on delete set null,
  created_by_bridge boolean not null default false,
  completed_at timestamptz,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  constraint tasks_conversation_fkey foreign key (conversation_id, workspace_id)
    references public.conversations (id, workspace_id) on delete set null (conversation_id),
  constraint tasks_contact_fkey foreign key (contact_id, workspace_id)
    references public.contacts (id, workspace_id) on delete set null (contact_id)
);
comment on table public.tasks is 'Work for a human: follow-ups, and the handoffs the AI agent hands over.';
comment on column public.tasks.type is
  'Free-form kind of task; ''handoff'' marks a conversation handed over to a human (the round-robin capacity counts the pending ones the bridge created).';
comment on column public.tasks.created_by is 'The user who created the task; null when the system did.';
comment on column public.tasks.created_by_bridge is
  'True for the tasks the bridge created (handoffs). Only the service role writes it; the round-robin capacity counts only these.';
comment on column public.tasks.completed_at is 'Set when status becomes completed, cleared when it returns to pending.';

create index tasks_workspace_id_status_idx on public.tasks (workspace_id, status);
create index tasks_pending_due_date_idx
  on public.tasks (workspace_id, due_date) where status = 'pending';
create index tasks_assigned_to_idx on public.tasks (assigned_to) where assigned_to is not null;
create index tasks_open_handoffs_idx
  on public.tasks (workspace_id, assigned_to)
  where type = 'handoff' and status = 'pending' and created_by_bridge;
create index tasks_conversation_id_idx
  on public.tasks (conversation_id) where conversation_id is not null;
create index tasks_contact_id_idx on public.tasks (contact_id) where contact_id is not null;
create index tasks_created_by_idx on public.tasks (created_by) where created_by is not null;

create trigger tasks_set_updated_at
  before update on public.tasks
  for each row execute function private.set_updated_at();

create or replace function private.set_task_completed_at()
returns trigger
language plpgsql
set search_path = ''
as $$
begin
  if new.status = 'completed' then
    if tg_op = 'INSERT' or old.status is distinct from 'completed' then
      new.completed_at := coalesce(new.completed_at, now());
    end if;
  else
    new.completed_at := null;
  end if;
  return new;
end;
$$;
comment on function private.set_task_completed_at() is
  'BEFORE INSERT/UPDATE trigger on tasks: keeps completed_at consistent with status.';
revoke execute on function private.set_task_completed_at() from public, anon, authenticated;

create trigger tasks_set_completed_at
  before insert or update of status on public.tasks
  for each row execute function private.set_task_completed_at();

-- ---------------------------------------------------------------------------------------------
-- RLS: members read; a member creates tasks as themselves (or as the system, created_by null);
-- the creator, the assignee or an admin updates a task, and anyone may take an unassigned one;
-- owners and admins delete.
-- ---------------------------------------------------------------------------------------------
alter table public.tasks enable row level security;

create policy tasks_authenticated_select on public.tasks
  for select to authenticated
  using (private.is_workspace_member(workspace_id));

create policy tasks_authenticated_insert on public.tasks
  for insert to authenticated
  with check (
    private.is_workspace_member(workspace_id)
    and (created_by is null or created_by = (select auth.uid())));

create policy tasks_authenticated_update on public.tasks
  for update to authenticated
  using (
    private.is_workspace_member(workspace_id)
    and (private.is_workspace_admin(workspace_id)
         or created_by = (select auth.uid())
         or assigned_to = (select auth.uid())
         or assigned_to is null))
  with check (private.is_workspace_member(workspace_id));

create policy tasks_authenticated_delete_admin on public.tasks
  for delete to authenticated
  using (private.is_workspace_admin(workspace_id));

-- What members may write (column grants; RLS picks the rows): a task's content, state, links and
-- assignee. Authorship is fixed at creation (created_by: themselves or null, by the insert
-- policy; never changed afterwards), and created_by_bridge, which makes a task count toward a
-- colleague's round-robin capacity, is the service role's alone.
revoke insert, update on public.tasks from anon, authenticated;
grant insert (workspace_id, title, description, due_date, priority, status, type, conversation_id,
  contact_id, assigned_to, created_by) on public.tasks to authenticated;
grant update (title, description, due_date, priority, status, type, conversation_id, contact_id,
  assigned_to) on public.tasks to authenticated;
