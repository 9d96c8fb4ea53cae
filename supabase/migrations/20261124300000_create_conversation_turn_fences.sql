-- =============================================================================================
-- Fencing of the worker's agent turn. The worker holds a session advisory lock per conversation
-- for a whole turn; a dropped connection frees that lock silently, so each holder also bumps
-- this epoch when it takes the lock, and every write and send of its turn checks the epoch is
-- still its own. Worker only (service_role).
-- =============================================================================================

create table public.conversation_turn_fences (
  conversation_id uuid primary key references public.conversations (id) on delete cascade,
  epoch bigint not null default 0,
  holder text,
  acquired_at timestamptz
);
comment on table public.conversation_turn_fences is
  'Fencing token of the worker currently running a conversation''s agent turn (internal).';
alter table public.conversation_turn_fences enable row level security;
revoke all on public.conversation_turn_fences from anon, authenticated;

create or replace function private.claim_turn_fence(p_conversation_id uuid, p_holder text)
returns bigint
language plpgsql
set search_path = ''
as $$
declare
  v_epoch bigint;
begin
  insert into public.conversation_turn_fences as f (conversation_id, epoch, holder, acquired_at)
  values (p_conversation_id, 1, p_holder, now())
  on conflict (conversation_id) do update
     set epoch = f.epoch + 1, holder = excluded.holder, acquired_at = excluded.acquired_at
  returning epoch into v_epoch;
  return v_epoch;
end;
$$;
comment on function private.claim_turn_fence(uuid, text) is
  'Called right after taking the conversation''s advisory lock: a new epoch fences off any earlier holder.';

-- Raises WBF01 when another holder has claimed the conversation since p_epoch.
create or replace function private.assert_turn_fence(p_conversation_id uuid, p_epoch bigint)
returns void
language plpgsql
set search_path = ''
as $$
begin
  -- Shared lock: a merge that deletes the conversation (and its fence) waits for this write
  -- to finish, and a write that comes after the merge finds no fence: FenceLost either way,
  -- never a foreign-key error half-way.
  if not exists (
    select 1 from public.conversation_turn_fences f
     where f.conversation_id = p_conversation_id and f.epoch = p_epoch
       for share
  ) then
    raise exception 'turn fence lost for conversation % (epoch %)', p_conversation_id, p_epoch
      using errcode = 'WBF01', hint = 'another worker owns this conversation now';
  end if;
end;
$$;

revoke execute on function private.claim_turn_fence(uuid, text) from public;
revoke execute on function private.assert_turn_fence(uuid, bigint) from public;
grant execute on function private.claim_turn_fence(uuid, text), private.assert_turn_fence(uuid, bigint)
  to service_role;
