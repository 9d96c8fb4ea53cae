-- =============================================================================================
-- Sending the outbox, one row at a time. The claim is fenced (only the turn's holder sends);
-- the outcome is a fact about WhatsApp and is recorded whoever holds the turn now. Worker only
-- (service_role).
-- =============================================================================================

-- The conversation's pending outbox rows in sending order: the bot's replies and the members'
-- messages (human, template) as they were queued, a turn's replies by their position.
create or replace function private.pending_outbox(p_conversation_id uuid)
returns jsonb
language plpgsql
stable
set search_path = ''
as $$
begin
  return coalesce((
    select jsonb_agg(jsonb_build_object(
             'id', m.id, 'kind', coalesce(m.outbox_kind, 'reply'),
             'body', coalesce(m.content ->> 'body', ''), 'delay_ms', coalesce(m.delay_ms, 0),
             'template', case when m.outbox_kind = 'template' then m.content -> 'template' end)
           order by m.created_at, m.outbox_position, m.id)
      from public.messages m
     where m.conversation_id = p_conversation_id and m.direction = 'outbound'
       and m.status = 'pending'), '[]'::jsonb);
end;
$$;

-- Rows a worker left `sending` when it died mid-call: their outcome is unknown, and they are
-- never re-sent. A row claimed less than p_in_flight_ms ago may still be in flight in a worker
-- that lost only its lock (its send ends within the send timeout, and its outcome is recorded
-- whoever holds the turn): it is left alone, and `wait_ms` says when to look again. Returns
-- {recovered, wait_ms}.
create or replace function private.recover_outbox(
  p_conversation_id uuid, p_epoch bigint, p_in_flight_ms int
) returns jsonb
language plpgsql
set search_path = ''
as $$
declare
  v_count int;
  v_wait_ms numeric;
begin
  perform private.assert_turn_fence(p_conversation_id, p_epoch);
  update public.messages
     set status = 'unknown', skip_reason = 'worker stopped during the send call'
   where conversation_id = p_conversation_id and direction = 'outbound' and status = 'sending'
     and coalesce(status_timestamp, created_at)
         <= now() - make_interval(secs => p_in_flight_ms / 1000.0);
  get diagnostics v_count = row_count;
  select max(extract(epoch from coalesce(m.status_timestamp, m.created_at)
                     + make_interval(secs => p_in_flight_ms / 1000.0) - now()) * 1000)
    into v_wait_ms
    from public.messages m
   where m.conversation_id = p_conversation_id and m.direction = 'outbound'
     and m.status = 'sending';
  return jsonb_build_object('recovered', v_count, 'wait_ms', greatest(coalesce(v_wait_ms, 0), 0));
end;
$$;

-- Pending rows that must not go out any more (the 24-hour window closed). Returns how many.
create or replace function private.skip_outbox(
  p_conversation_id uuid, p_epoch bigint, p_message_ids uuid[], p_reason text
) returns int
language plpgsql
set search_path = ''
as $$
declare
  v_count int;
begin
  perform private.assert_turn_fence(p_conversation_id, p_epoch);
  update public.messages set status = 'skipped', skip_reason = p_reason
   where conversation_id = p_conversation_id and id = any(p_message_ids) and status = 'pending';
  get diagnostics v_count = row_count;
  return v_count;
end;
$$;

-- Just before sending one outbox row: still this worker's turn, the conversation still on a
-- channel of its workspace, and (for a reply) no human took over, the agent still on and no
-- newer inbound message? If so the row moves to `sending`. Without a channel nothing can go out:
-- every pending row of the conversation is skipped. A reply that must not go out is skipped
-- with the turn's later replies. A member's text (human) goes out whether the agent is on or not,
-- but only inside the 24-hour customer service window: outside it the row fails with the reason
-- (a template, sent by public.send_template, is the way then). Returns {claimed, reason,
-- skipped, failed}.
create or replace function private.claim_outbox_message(
  p_conversation_id uuid, p_epoch bigint, p_message_id uuid
) returns jsonb
language plpgsql
set search_path = ''
as $$
declare
  v_kind text;
  v_reason text;
  v_skipped int;
begin
  perform private.assert_turn_fence(p_conversation_id, p_epoch);
  select coalesce(outbox_kind, 'reply') into v_kind from public.messages
   where id = p_message_id and status = 'pending';
  if not found then
    return jsonb_build_object('claimed', false, 'reason', 'gone', 'skipped', 0);
  end if;
  if not exists (select 1 from public.conversations c
                   join public.whatsapp_channels ch
                     on ch.id = c.channel_id and ch.workspace_id = c.workspace_id
                  where c.id = p_conversation_id) then
    update public.messages set status = 'skipped', skip_reason = 'no channel'
     where conversation_id = p_conversation_id and direction = 'outbound' and status = 'pending';
    get diagnostics v_skipped = row_count;
    return jsonb_build_object('claimed', false, 'reason', 'no channel', 'skipped', v_skipped);
  end if;
  if v_kind = 'human' and not exists (
       select 1 from public.conversations c
        where c.id = p_conversation_id
          and c.last_customer_message_at > now() - interval '24 hours') then
    update public.messages
       set status = 'failed', error_code = 'window_closed', status_timestamp = now(),
           error_message = '24-hour customer service window closed: the customer has not written'
                           || ' in the last 24 hours; send an approved template instead'
                           || ' (public.send_template)'
     where id = p_message_id;
    return jsonb_build_object('claimed', false, 'reason', 'window closed', 'skipped', 0,
                              'failed', 1);
  end if;
  if v_kind = 'reply' then
    if exists (select 1 from public.conversations c
                where c.id = p_conversation_id and c.bot_paused_until > now()) then
      v_reason := 'human took over';
    elsif not private.is_agent_enabled(p_conversation_id) then
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
    get diagnostics v_skipped = row_count;
    return jsonb_build_object('claimed', false, 'reason', v_reason, 'skipped', v_skipped);
  end if;
  -- The claim's time bounds how long the send may still be in flight (private.recover_outbox).
  update public.messages
     set status = 'sending', send_attempts = send_attempts + 1, status_timestamp = now()
   where id = p_message_id;
  return jsonb_build_object('claimed', true, 'reason', null, 'skipped', 0);
end;
$$;

-- The outcome of one send. A wamid learnt here may already have statuses waiting as orphans.
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

revoke execute on function private.pending_outbox(uuid) from public;
revoke execute on function private.recover_outbox(uuid, bigint, int) from public;
revoke execute on function private.skip_outbox(uuid, bigint, uuid[], text) from public;
revoke execute on function private.claim_outbox_message(uuid, bigint, uuid) from public;
revoke execute on function private.record_outbox_send(uuid, text, text, text, text) from public;
grant execute on function private.pending_outbox(uuid), private.recover_outbox(uuid, bigint, int),
  private.skip_outbox(uuid, bigint, uuid[], text),
  private.claim_outbox_message(uuid, bigint, uuid),
  private.record_outbox_send(uuid, text, text, text, text) to service_role;
