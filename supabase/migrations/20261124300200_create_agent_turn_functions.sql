-- =============================================================================================
-- The agent turn's reads and writes as a handful of functions, so a turn costs a few round trips
-- instead of dozens. Each write checks the turn's fencing epoch in the same statement. Worker
-- only (service_role); none of these is exposed through the API.
-- They are plpgsql, the one-statement ones too: plpgsql keeps each statement's plan for the
-- connection, while a `language sql` function with a SET clause (here search_path) is never
-- inlined and is planned again on every call.
-- =============================================================================================

-- The agent answers a conversation when the workspace switch is on AND the conversation's
-- override is not false (null inherits; a per-conversation true never beats a global off) AND
-- no human has taken it over (bot_paused_until in the future: private.pause_bot_for_human).
-- turn_snapshot applies the same rule in its own statement.
create or replace function private.is_agent_enabled(p_conversation_id uuid)
returns boolean
language plpgsql
stable
set search_path = ''
as $$
begin
  return coalesce((
    select cfg.agent_enabled and coalesce(c.agent_conversational, true)
           and (c.bot_paused_until is null or c.bot_paused_until <= now())
      from public.conversations c
      join public.workspace_agent_config cfg on cfg.workspace_id = c.workspace_id
     where c.id = p_conversation_id), false);
end;
$$;

-- The advisory-lock key of a conversation: its uuid's first 8 bytes as a signed bigint (the
-- worker computes the same number).
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

-- Try the conversation's session-level advisory lock, when it has work. False when there is
-- nothing to do or another session holds the lock (its holder re-checks for new messages after
-- unlocking, so nothing waits on this caller). One session of a worker holds the locks of all the
-- conversations it runs (a session may take its own lock twice: the worker refuses that itself),
-- so this statement writes nothing: the fence is claimed by private.begin_turn on another
-- connection.
create or replace function private.lock_conversation(p_conversation_id uuid)
returns boolean
language plpgsql
set search_path = ''
as $$
begin
  -- Two statements: SQL does not promise to evaluate `a and b` left to right.
  if not private.conversation_has_work(p_conversation_id) then
    return false;
  end if;
  return pg_catalog.pg_try_advisory_lock(private.conversation_lock_key(p_conversation_id));
end;
$$;

-- Release the lock, then say whether work is waiting: an inbound message, or a member's reply
-- (public.send_message), stored while the lock was held found it busy and its job left it to
-- us. The check is a statement of its own, after the unlock, so it sees every row committed
-- before the lock was free.
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
                    and not m.processed_by_agent)
      or exists (select 1 from public.messages m
                  where m.conversation_id = p_conversation_id and m.direction = 'outbound'
                    and m.status = 'pending');
end;
$$;

-- Everything a turn reads before deciding, in one statement: the conversation with its channel,
-- credentials, contact and agent config, whether the agent is on, the unprocessed inbound
-- messages (oldest first), how many outbox rows are pending or in flight, and the age of the
-- newest unprocessed message (for the reply window).
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
      'bsuid', c.bsuid, 'group_id', c.group_id, 'profile_name', c.profile_name,
      'channel_id', ch.id,
      'phone_number_id', ch.phone_number_id,
      'provider', coalesce(ch.provider, 'meta'), 'api_base_url', ch.api_base_url,
      'access_token', cr.access_token, 'api_key', cr.api_key,
      'contact', case when ct.id is null then null
                      else jsonb_build_object('id', ct.id, 'name', ct.name, 'phone', ct.phone) end,
      'config', coalesce(to_jsonb(cfg), '{}'::jsonb),
      -- Without a channel the agent cannot answer: the verdict is `off`, nothing is sent.
      -- A group's conversation only when the workspace lets the agent answer groups.
      'enabled', coalesce(cfg.agent_enabled and coalesce(c.agent_conversational, true)
                          and (c.bot_paused_until is null or c.bot_paused_until <= now())
                          and (c.group_id is null or cfg.agent_answers_groups), false)
                 and ch.id is not null,
      'paused_until', c.bot_paused_until,
      'messages', coalesce(inbound.messages, '[]'::jsonb),
      'newest_age_ms', extract(epoch from now() - arrival.newest) * 1000,
      'outbox_pending', outbox.pending,
      'outbox_sending', outbox.sending)
    from public.conversations c
    -- The sending channel is the conversation's own, and only if it belongs to the same
    -- workspace: never looked up by a number, so no row can borrow another tenant's number or
    -- credentials. No channel: channel_id and phone_number_id are null, the agent counts as
    -- off, and the outbox claim refuses every send.
    left join public.whatsapp_channels ch
      on ch.id = c.channel_id and ch.workspace_id = c.workspace_id
    left join private.whatsapp_channel_credentials cr on cr.channel_id = ch.id
    left join public.contacts ct on ct.id = c.contact_id
    left join public.workspace_agent_config cfg on cfg.workspace_id = c.workspace_id
    -- At most the 50 oldest messages make one turn (the rest make the next), each text cut to
    -- WhatsApp's 4096 characters: a flood of huge rows cannot build a snapshot without bound.
    cross join lateral (
      select jsonb_agg(jsonb_build_object(
               'id', u.id, 'wamid', u.wamid, 'type', u.type,
               'content', case when length(u.content ->> 'body') > 4096
                               then jsonb_set(u.content, '{body}',
                                              to_jsonb(left(u.content ->> 'body', 4096)))
                               else u.content end,
               'timestamp', u.timestamp) order by u.timestamp, u.received_seq) as messages
        from (select m.id, m.wamid, m.type, m.content, m.timestamp, m.received_seq
                from public.messages m
               where m.conversation_id = c.id and m.direction = 'inbound'
                 and not m.processed_by_agent
               order by m.timestamp, m.received_seq
               limit 50) u) inbound
    -- Arrival times clamped to [now - 1 day, now]: an infinite or far-off one cannot break the
    -- reply window's arithmetic.
    cross join lateral (
      select max(least(greatest(m.created_at, now() - interval '1 day'), now())) as newest
        from public.messages m
       where m.conversation_id = c.id and m.direction = 'inbound'
         and not m.processed_by_agent) arrival
    cross join lateral (
      select count(*) filter (where m.status = 'pending') as pending,
             count(*) filter (where m.status = 'sending') as sending
        from public.messages m
       where m.conversation_id = c.id and m.direction = 'outbound'
         and m.status in ('pending', 'sending')) outbox
    where c.id = p_conversation_id);
end;
$$;

-- The contact (linked, found by WhatsApp identity, or created: profile name, else the phone;
-- a concurrent creator wins the unique key and its row is used) and the active session of
-- (conversation, agent), created fresh after a handoff or close.
create or replace function private.prepare_turn(
  p_conversation_id uuid, p_epoch bigint, p_agent_id text
) returns jsonb
language plpgsql
set search_path = ''
as $$
declare
  v_conv record;
  v_contact record;
  v_contact_id uuid;
  v_session record;
  v_new_session boolean := false;
begin
  perform private.assert_turn_fence(p_conversation_id, p_epoch);
  select * into v_conv from public.conversations where id = p_conversation_id;
  select id, name, phone into v_contact from public.contacts where id = v_conv.contact_id;
  if v_contact.id is null then
    -- Looked up first: as a filter, a function call may run for every row of a scan.
    v_contact_id := private.find_contact(v_conv.workspace_id, v_conv.bsuid, v_conv.phone);
    select id, name, phone into v_contact from public.contacts where id = v_contact_id;
  end if;
  -- A group's conversation has no one customer: no contact.
  if v_contact.id is null and (v_conv.phone is not null or v_conv.bsuid is not null) then
    begin
      insert into public.contacts (workspace_id, name, phone, bsuid)
      values (v_conv.workspace_id,
              coalesce(v_conv.profile_name, v_conv.phone, v_conv.bsuid, 'WhatsApp'),
              v_conv.phone, v_conv.bsuid)
      returning id, name, phone into v_contact;
    exception when unique_violation then
      v_contact_id := private.find_contact(v_conv.workspace_id, v_conv.bsuid, v_conv.phone);
      select id, name, phone into v_contact from public.contacts where id = v_contact_id;
    end;
  end if;
  if v_conv.contact_id is distinct from v_contact.id then
    update public.conversations set contact_id = v_contact.id where id = p_conversation_id;
  end if;

  select id, current_mode, state, version into v_session
    from public.agent_sessions
   where conversation_id = p_conversation_id and agent_id = p_agent_id and status = 'active';
  if v_session.id is null then
    insert into public.agent_sessions (workspace_id, agent_id, conversation_id, contact_id)
    values (v_conv.workspace_id, p_agent_id, p_conversation_id, v_contact.id)
    returning id, current_mode, state, version into v_session;
    v_new_session := true;
  end if;
  return jsonb_build_object(
    'contact', case when v_contact.id is null then null
                    else jsonb_build_object('id', v_contact.id, 'name', v_contact.name,
                                            'phone', v_contact.phone) end,
    'session', jsonb_build_object('id', v_session.id, 'mode', v_session.current_mode,
                                  'state', v_session.state, 'version', v_session.version,
                                  'is_new', v_new_session));
end;
$$;

-- The verdict on a taken conversation: what the turn must do next, decided here so the worker
-- only branches on it. In order: `gone` (no such conversation), `resume` (outbox rows a turn
-- left pending or in flight come first), `idle` (nothing to answer), `off` (the agent is off for
-- it), `wait` (the reply window is still open: `wait_ms`), `handoff` (the caller hands the
-- messages to a human), else `run`, with the contact and session prepared. Fenced: only the
-- turn's holder asks.
create or replace function private.turn_verdict(
  p_conversation_id uuid, p_epoch bigint, p_handing_off boolean
) returns jsonb
language plpgsql
volatile
set search_path = ''
as $$
declare
  v_snapshot jsonb;
  v_agent_id text;
  v_wait_ms numeric;
  v_verdict text;
  v_prepared jsonb;
begin
  perform private.assert_turn_fence(p_conversation_id, p_epoch);
  v_snapshot := private.turn_snapshot(p_conversation_id);
  if v_snapshot is null then
    return jsonb_build_object('verdict', 'gone', 'snapshot', null);
  end if;
  v_agent_id := v_snapshot #>> '{config,conversational_agent_id}';
  v_wait_ms := coalesce((v_snapshot #>> '{config,reply_window_ms}')::numeric, 0)
               - coalesce((v_snapshot ->> 'newest_age_ms')::numeric, 0);
  v_verdict := case
    when (v_snapshot ->> 'outbox_pending')::int + (v_snapshot ->> 'outbox_sending')::int > 0
      then 'resume'
    when jsonb_array_length(v_snapshot -> 'messages') = 0 then 'idle'
    when not (v_snapshot ->> 'enabled')::boolean then 'off'
    when v_wait_ms > 0 then 'wait'
    when p_handing_off then 'handoff'
    else 'run'
  end;
  if v_verdict = 'run' then
    v_prepared := private.prepare_turn(p_conversation_id, p_epoch, v_agent_id);
  end if;
  return jsonb_build_object(
    'verdict', v_verdict, 'snapshot', v_snapshot, 'agent_id', v_agent_id,
    'wait_ms', greatest(v_wait_ms, 0), 'prepared', v_prepared);
end;
$$;

-- A turn's first statement, once its lock is taken (private.lock_conversation): a new fencing
-- epoch and the verdict. Null when the conversation no longer exists. Each statement of this
-- volatile function takes a new snapshot, so the verdict sees every message committed before the
-- lock was taken.
create or replace function private.begin_turn(
  p_conversation_id uuid, p_holder text, p_handing_off boolean
) returns jsonb
language plpgsql
volatile
set search_path = ''
as $$
declare
  v_epoch bigint;
begin
  if not exists (select 1 from public.conversations c where c.id = p_conversation_id) then
    return null;
  end if;
  v_epoch := private.claim_turn_fence(p_conversation_id, p_holder);
  return private.turn_verdict(p_conversation_id, v_epoch, p_handing_off)
         || jsonb_build_object('epoch', v_epoch);
end;
$$;

-- The one place inbound messages are marked handled by the agent: by a turn's decision (with the
-- turn that answered them), by a handoff, or because the agent is off.
create or replace function private.mark_processed(
  p_conversation_id uuid, p_message_ids uuid[], p_turn_id uuid
) returns void
language plpgsql
set search_path = ''
as $$
begin
  update public.messages
     set processed_by_agent = true, agent_turn_id = coalesce(p_turn_id, agent_turn_id)
   where conversation_id = p_conversation_id and id = any(p_message_ids);
end;
$$;

-- The agent is off for the conversation: its messages are handled, nothing else happens.
create or replace function private.skip_turn(
  p_conversation_id uuid, p_epoch bigint, p_message_ids uuid[]
) returns void
language plpgsql
set search_path = ''
as $$
begin
  perform private.assert_turn_fence(p_conversation_id, p_epoch);
  perform private.mark_processed(p_conversation_id, p_message_ids, null);
end;
$$;

-- The decision, atomically: the session's new mode and state (optimistic version check), the
-- user and assistant turns, the replies as pending outbox rows (sent_by_agent), and the inbound
-- messages marked processed. Returns the outbox rows' ids in order.
create or replace function private.commit_turn(
  p_conversation_id uuid, p_epoch bigint, p_session_id uuid, p_version int, p_mode text,
  p_state jsonb, p_user_text text, p_intent text, p_confidence numeric, p_tokens int,
  p_tools jsonb, p_replies jsonb, p_message_ids uuid[]
) returns uuid[]
language plpgsql
set search_path = ''
as $$
declare
  v_next int;
  v_turn uuid;
  v_ids uuid[];
begin
  perform private.assert_turn_fence(p_conversation_id, p_epoch);
  update public.agent_sessions
     set current_mode = p_mode, state = p_state, version = version + 1, last_activity_at = now()
   where id = p_session_id and version = p_version and status = 'active';
  if not found then
    raise exception 'session % changed under the turn', p_session_id using errcode = 'WBS01';
  end if;
  select coalesce(max(turn_number), 0) + 1 into v_next
    from public.agent_turns where session_id = p_session_id;
  insert into public.agent_turns
    (session_id, turn_number, role, content, intent_detected, confidence, tokens_used)
  values (p_session_id, v_next, 'user', p_user_text, p_intent, p_confidence, 0);
  insert into public.agent_turns
    (session_id, turn_number, role, content, intent_detected, confidence, tokens_used,
     tools_called)
  values (p_session_id, v_next + 1, 'assistant',
          coalesce((select string_agg(r ->> 'text', e'\n' order by o)
                      from jsonb_array_elements(p_replies) with ordinality as x(r, o)), ''),
          p_intent, p_confidence, p_tokens, coalesce(p_tools, '[]'::jsonb))
  returning id into v_turn;
  with inserted as (
    insert into public.messages
      (workspace_id, conversation_id, direction, type, content, status, sent_by_agent,
       agent_turn_id, outbox_kind, outbox_position, delay_ms, template_name)
    select c.workspace_id, c.id, 'outbound', 'text', jsonb_build_object('body', r ->> 'text'),
           'pending', true, v_turn, 'reply', (o - 1)::int, coalesce((r ->> 'delay_ms')::int, 0),
           r ->> 'template_id'
      from public.conversations c,
           jsonb_array_elements(p_replies) with ordinality as x(r, o)
     where c.id = p_conversation_id
    returning id, outbox_position)
  select coalesce(array_agg(id order by outbox_position), '{}') into v_ids from inserted;
  perform private.mark_processed(p_conversation_id, p_message_ids, v_turn);
  return v_ids;
end;
$$;

revoke execute on function private.is_agent_enabled(uuid) from public;
revoke execute on function private.conversation_lock_key(uuid) from public;
revoke execute on function private.conversation_has_work(uuid) from public;
revoke execute on function private.lock_conversation(uuid) from public;
revoke execute on function private.unlock_conversation(uuid) from public;
revoke execute on function private.turn_snapshot(uuid) from public;
revoke execute on function private.prepare_turn(uuid, bigint, text) from public;
revoke execute on function private.begin_turn(uuid, text, boolean) from public;
revoke execute on function private.turn_verdict(uuid, bigint, boolean) from public;
revoke execute on function private.mark_processed(uuid, uuid[], uuid) from public;
revoke execute on function private.skip_turn(uuid, bigint, uuid[]) from public;
revoke execute on function private.commit_turn(uuid, bigint, uuid, int, text, jsonb, text, text,
  numeric, int, jsonb, jsonb, uuid[]) from public;
grant execute on function private.is_agent_enabled(uuid), private.conversation_lock_key(uuid),
  private.conversation_has_work(uuid), private.lock_conversation(uuid),
  private.unlock_conversation(uuid), private.turn_snapshot(uuid),
  private.prepare_turn(uuid, bigint, text), private.begin_turn(uuid, text, boolean),
  private.turn_verdict(uuid, bigint, boolean), private.mark_processed(uuid, uuid[], uuid),
  private.skip_turn(uuid, bigint, uuid[]),
  private.commit_turn(uuid, bigint, uuid, int, text, jsonb, text, text, numeric, int, jsonb, jsonb, uuid[])
  to service_role;
