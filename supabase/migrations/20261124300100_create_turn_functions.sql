-- =============================================================================================
-- The agent turn's reads and writes as a handful of functions, so a turn costs a few round
-- trips instead of dozens. Each write checks the turn's fencing epoch in the same statement.
-- Worker only (service_role); none of these is exposed through the API.
-- =============================================================================================

-- The advisory-lock key of a conversation: its uuid's first 8 bytes as a signed bigint (the
-- worker computes the same number).
create or replace function private.conversation_lock_key(p_conversation_id uuid)
returns bigint
language sql
immutable
set search_path = ''
as $$
  select ('x' || left(replace(p_conversation_id::text, '-', ''), 16))::bit(64)::bigint
$$;

-- Try the conversation's session-level advisory lock; on success claim a new fencing epoch.
-- Null when another session holds the lock.
create or replace function private.lock_conversation(p_conversation_id uuid, p_holder text)
returns bigint
language plpgsql
set search_path = ''
as $$
begin
  if not pg_catalog.pg_try_advisory_lock(private.conversation_lock_key(p_conversation_id)) then
    return null;
  end if;
  return private.claim_turn_fence(p_conversation_id, p_holder);
end;
$$;

-- Everything a turn reads before deciding, in one statement: the conversation with its channel,
-- credentials, contact and agent config, whether the agent is on, the unprocessed inbound
-- messages (oldest first), how many outbox rows are pending or in flight, and the age of the
-- newest unprocessed message (for the reply window).
create or replace function private.turn_snapshot(p_conversation_id uuid)
returns jsonb
language sql
stable
set search_path = ''
as $$
  select jsonb_build_object(
    'conversation_id', c.id, 'workspace_id', c.workspace_id, 'phone', c.phone,
    'bsuid', c.bsuid, 'profile_name', c.profile_name, 'phone_number_id', c.phone_number_id,
    'provider', coalesce(ch.provider, 'meta'), 'api_base_url', ch.api_base_url,
    'access_token', cr.access_token, 'api_key', cr.api_key,
    'contact', case when ct.id is null then null
                    else jsonb_build_object('id', ct.id, 'name', ct.name, 'phone', ct.phone) end,
    'config', coalesce(to_jsonb(cfg), '{}'::jsonb),
    'enabled', private.is_agent_enabled(c.id),
    'messages', coalesce((
      select jsonb_agg(jsonb_build_object(
               'id', m.id, 'wamid', m.wamid, 'type', m.type, 'content', m.content,
               'timestamp', m.timestamp) order by m.timestamp, m.created_at, m.id)
        from public.messages m
       where m.conversation_id = c.id and m.direction = 'inbound' and not m.processed_by_agent),
      '[]'::jsonb),
    'newest_age_ms', (
      select extract(epoch from now() - max(m.created_at)) * 1000
        from public.messages m
       where m.conversation_id = c.id and m.direction = 'inbound' and not m.processed_by_agent),
    'outbox_pending', (
      select count(*) from public.messages m
       where m.conversation_id = c.id and m.direction = 'outbound' and m.status = 'pending'),
    'outbox_sending', (
      select count(*) from public.messages m
       where m.conversation_id = c.id and m.direction = 'outbound' and m.status = 'sending'))
  from public.conversations c
  left join public.whatsapp_channels ch on ch.phone_number_id = c.phone_number_id
  left join private.whatsapp_channel_credentials cr on cr.channel_id = ch.id
  left join public.contacts ct on ct.id = c.contact_id
  left join public.workspace_agent_config cfg on cfg.workspace_id = c.workspace_id
  where c.id = p_conversation_id
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
  v_session record;
  v_new_session boolean := false;
begin
  perform private.assert_turn_fence(p_conversation_id, p_epoch);
  select * into v_conv from public.conversations where id = p_conversation_id;
  select id, name, phone into v_contact from public.contacts where id = v_conv.contact_id;
  if v_contact.id is null then
    select id, name, phone into v_contact from public.contacts ct
     where ct.workspace_id = v_conv.workspace_id
       and ((v_conv.bsuid is not null and ct.bsuid = v_conv.bsuid)
            or (v_conv.phone is not null and ct.phone = v_conv.phone))
     order by (ct.bsuid is not distinct from v_conv.bsuid) desc
     limit 1;
  end if;
  if v_contact.id is null then
    begin
      insert into public.contacts (workspace_id, name, phone, bsuid)
      values (v_conv.workspace_id,
              coalesce(v_conv.profile_name, v_conv.phone, v_conv.bsuid, 'WhatsApp'),
              v_conv.phone, v_conv.bsuid)
      returning id, name, phone into v_contact;
    exception when unique_violation then
      select id, name, phone into v_contact from public.contacts ct
       where ct.workspace_id = v_conv.workspace_id
         and ((v_conv.bsuid is not null and ct.bsuid = v_conv.bsuid)
              or (v_conv.phone is not null and ct.phone = v_conv.phone))
       order by (ct.bsuid is not distinct from v_conv.bsuid) desc
       limit 1;
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
    'contact', jsonb_build_object('id', v_contact.id, 'name', v_contact.name,
                                  'phone', v_contact.phone),
    'session', jsonb_build_object('id', v_session.id, 'mode', v_session.current_mode,
                                  'state', v_session.state, 'version', v_session.version,
                                  'is_new', v_new_session));
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
  update public.messages set processed_by_agent = true, agent_turn_id = v_turn
   where id = any(p_message_ids);
  return v_ids;
end;
$$;

-- Just before sending one outbox row: still this worker's turn, and (for a reply) the agent
-- still on and no newer inbound message? If so the row moves to `sending` and 'claimed' is
-- returned; otherwise this and the turn's later replies are skipped and the reason returned.
create or replace function private.claim_outbox_message(
  p_conversation_id uuid, p_epoch bigint, p_message_id uuid
) returns text
language plpgsql
set search_path = ''
as $$
declare
  v_kind text;
  v_reason text;
begin
  perform private.assert_turn_fence(p_conversation_id, p_epoch);
  select coalesce(outbox_kind, 'reply') into v_kind from public.messages
   where id = p_message_id and status = 'pending';
  if not found then
    return 'gone';
  end if;
  if v_kind = 'reply' then
    if not private.is_agent_enabled(p_conversation_id) then
      v_reason := 'agent disabled';
    elsif exists (select 1 from public.messages
                   where conversation_id = p_conversation_id and direction = 'inbound'
                     and not processed_by_agent) then
      v_reason := 'newer inbound message';
    end if;
  end if;
  if v_reason is not null then
    update public.messages set status = 'skipped', skip_reason = v_reason
     where conversation_id = p_conversation_id and direction = 'outbound' and status = 'pending'
       and coalesce(outbox_kind, 'reply') = 'reply';
    return v_reason;
  end if;
  update public.messages set status = 'sending', send_attempts = send_attempts + 1
   where id = p_message_id;
  return 'claimed';
end;
$$;

-- The outcome of one send, a fact about WhatsApp: recorded whoever holds the turn now.
create or replace function private.record_outbox_send(
  p_message_id uuid, p_status text, p_wamid text, p_error_code text, p_reason text
) returns void
language plpgsql
set search_path = ''
as $$
begin
  update public.messages
     set status = p_status, wamid = coalesce(p_wamid, wamid), error_code = p_error_code,
         error_message = p_reason, status_timestamp = now(),
         timestamp = case when p_status = 'sent' then now() else timestamp end
   where id = p_message_id;
  if p_wamid is not null then
    perform private.apply_orphan_statuses(p_wamid);
  end if;
end;
$$;

revoke execute on function private.conversation_lock_key(uuid) from public;
revoke execute on function private.lock_conversation(uuid, text) from public;
revoke execute on function private.turn_snapshot(uuid) from public;
revoke execute on function private.prepare_turn(uuid, bigint, text) from public;
revoke execute on function private.commit_turn(uuid, bigint, uuid, int, text, jsonb, text, text,
  numeric, int, jsonb, jsonb, uuid[]) from public;
revoke execute on function private.claim_outbox_message(uuid, bigint, uuid) from public;
revoke execute on function private.record_outbox_send(uuid, text, text, text, text) from public;
grant execute on function private.conversation_lock_key(uuid), private.lock_conversation(uuid, text),
  private.turn_snapshot(uuid), private.prepare_turn(uuid, bigint, text),
  private.commit_turn(uuid, bigint, uuid, int, text, jsonb, text, text, numeric, int, jsonb, jsonb, uuid[]),
  private.claim_outbox_message(uuid, bigint, uuid),
  private.record_outbox_send(uuid, text, text, text, text) to service_role;
