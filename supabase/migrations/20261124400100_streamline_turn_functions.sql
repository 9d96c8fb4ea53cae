-- =============================================================================================
-- The agent turn's SQL, same results, less planning. A `language sql` function with a SET clause
-- is never inlined and, before Postgres 18, is planned again on every call: turn_snapshot cost
-- ~1.5 ms of database CPU per call that way, is_agent_enabled ~0.3 ms, the lock key 0.1 ms.
-- As plpgsql their plans are cached per connection. Two turn steps also lose a round trip each:
-- a job whose conversation has nothing to do does not take the lock at all, and unlocking
-- answers whether messages arrived meanwhile.
-- =============================================================================================

create or replace function private.conversation_lock_key(p_conversation_id uuid)
returns bigint
language plpgsql
immutable
set search_path = ''
as $$
begin
  return ('x' || left(replace(p_conversation_id::text, '-', ''), 16))::bit(64)::bigint;
end;
$$;

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

create or replace function private.is_agent_enabled(p_conversation_id uuid)
returns boolean
language plpgsql
stable
set search_path = ''
as $$
begin
  return coalesce((
    select cfg.agent_enabled and coalesce(c.agent_conversational, true)
      from public.conversations c
      join public.workspace_agent_config cfg on cfg.workspace_id = c.workspace_id
     where c.id = p_conversation_id), false);
end;
$$;

-- Whether a turn has anything to do: unprocessed inbound messages, or outbox rows a worker
-- left pending or in flight.
create or replace function private.conversation_has_work(p_conversation_id uuid)
returns boolean
language plpgsql
stable
set search_path = ''
as $$
begin
  return exists (select 1 from public.messages m
                  where m.conversation_id = p_conversation_id and m.direction = 'inbound'
                    and not m.processed_by_agent)
      or exists (select 1 from public.messages m
                  where m.conversation_id = p_conversation_id and m.direction = 'outbound'
                    and m.status in ('pending', 'sending'));
end;
$$;

-- Try the conversation's session-level advisory lock, when it has work; on success claim a new
-- fencing epoch. Null when there is nothing to do or another session holds the lock (its
-- holder re-checks for new messages after unlocking, so nothing waits on this caller).
create or replace function private.lock_conversation(p_conversation_id uuid, p_holder text)
returns bigint
language plpgsql
set search_path = ''
as $$
begin
  if not private.conversation_has_work(p_conversation_id) then
    return null;
  end if;
  if not pg_catalog.pg_try_advisory_lock(private.conversation_lock_key(p_conversation_id)) then
    return null;
  end if;
  return private.claim_turn_fence(p_conversation_id, p_holder);
end;
$$;

-- Release the lock, then say whether inbound messages are waiting: one stored while the lock
-- was held found it busy and its job left it to us. The check is a statement of its own, after
-- the unlock, so it sees every message committed before the lock was free.
create or replace function private.unlock_conversation(p_conversation_id uuid)
returns boolean
language plpgsql
volatile
set search_path = ''
as $$
begin
  perform pg_catalog.pg_advisory_unlock(private.conversation_lock_key(p_conversation_id));
  return exists (select 1 from public.messages m
                  where m.conversation_id = p_conversation_id and m.direction = 'inbound'
                    and not m.processed_by_agent);
end;
$$;

create or replace function private.turn_snapshot(p_conversation_id uuid)
returns jsonb
language plpgsql
stable
set search_path = ''
as $$
begin
  return (
    select jsonb_build_object(
      'conversation_id', c.id, 'workspace_id', c.workspace_id, 'phone', c.phone,
      'bsuid', c.bsuid, 'profile_name', c.profile_name, 'phone_number_id', c.phone_number_id,
      'provider', coalesce(ch.provider, 'meta'), 'api_base_url', ch.api_base_url,
      'access_token', cr.access_token, 'api_key', cr.api_key,
      'contact', case when ct.id is null then null
                      else jsonb_build_object('id', ct.id, 'name', ct.name, 'phone', ct.phone) end,
      'config', coalesce(to_jsonb(cfg), '{}'::jsonb),
      'enabled', coalesce(cfg.agent_enabled and coalesce(c.agent_conversational, true), false),
      'messages', coalesce(inbound.messages, '[]'::jsonb),
      'newest_age_ms', extract(epoch from now() - inbound.newest) * 1000,
      'outbox_pending', outbox.pending,
      'outbox_sending', outbox.sending)
    from public.conversations c
    left join public.whatsapp_channels ch on ch.phone_number_id = c.phone_number_id
    left join private.whatsapp_channel_credentials cr on cr.channel_id = ch.id
    left join public.contacts ct on ct.id = c.contact_id
    left join public.workspace_agent_config cfg on cfg.workspace_id = c.workspace_id
    cross join lateral (
      select jsonb_agg(jsonb_build_object(
               'id', m.id, 'wamid', m.wamid, 'type', m.type, 'content', m.content,
               'timestamp', m.timestamp) order by m.timestamp, m.created_at, m.id) as messages,
             max(m.created_at) as newest
        from public.messages m
       where m.conversation_id = c.id and m.direction = 'inbound'
         and not m.processed_by_agent) inbound
    cross join lateral (
      select count(*) filter (where m.status = 'pending') as pending,
             count(*) filter (where m.status = 'sending') as sending
        from public.messages m
       where m.conversation_id = c.id and m.direction = 'outbound'
         and m.status in ('pending', 'sending')) outbox
    where c.id = p_conversation_id);
end;
$$;

revoke execute on function private.conversation_has_work(uuid) from public;
revoke execute on function private.unlock_conversation(uuid) from public;
grant execute on function private.conversation_has_work(uuid), private.unlock_conversation(uuid)
  to service_role;
