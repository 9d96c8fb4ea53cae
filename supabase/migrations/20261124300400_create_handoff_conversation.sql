-- =============================================================================================
-- Handoff, in one transaction: bot off for this conversation (agent_crm untouched), the active
-- session closed as handed off, a high-priority task for the conversation AND its contact,
-- assigned round-robin (unassigned when nobody is online), and the workspace's handoff message
-- queued in the outbox. Does nothing when the agent was switched off meanwhile.
-- =============================================================================================

create or replace function private.handoff_conversation(
  p_conversation_id uuid, p_reason text, p_epoch bigint default null,
  p_message_ids uuid[] default '{}'
) returns jsonb
language plpgsql
set search_path = ''
as $$
declare
  v_conv record;
  v_assignee uuid;
  v_task_id uuid;
  v_message_id uuid;
  v_message text;
  v_who text;
begin
  if p_conversation_id is null then
    raise exception 'p_conversation_id must not be null' using errcode = '22004';
  end if;
  if p_epoch is not null then
    perform private.assert_turn_fence(p_conversation_id, p_epoch);
  end if;
  -- The messages handed over are handled, whether or not the handoff still happens.
  perform private.mark_processed(p_conversation_id, p_message_ids, null);
  select c.*, ct.name as contact_name into v_conv
    from public.conversations c
    left join public.contacts ct on ct.id = c.contact_id
   where c.id = p_conversation_id
     for update of c;
  if not found then
    raise exception 'conversation % not found', p_conversation_id using errcode = 'P0002';
  end if;
  if not private.is_agent_enabled(p_conversation_id) then
    return jsonb_build_object('handed_off', false, 'reason', 'agent_disabled');
  end if;

  update public.conversations set agent_conversational = false where id = p_conversation_id;
  update public.agent_sessions
     set status = 'handed_off', closed_at = now(), close_reason = p_reason
   where conversation_id = p_conversation_id and status = 'active';

  v_assignee := private.assign_next_agent(v_conv.workspace_id);
  v_who := coalesce(v_conv.contact_name, v_conv.profile_name, v_conv.phone, v_conv.bsuid,
                   'el grupo ' || v_conv.group_id);
  insert into public.tasks
    (workspace_id, title, description, priority, status, type, conversation_id, contact_id,
     assigned_to, created_by_bridge)
  values (
    v_conv.workspace_id,
    'Handoff: atender conversación de ' || v_who,
    'El agente pasó la conversación a una persona. Motivo: ' || coalesce(p_reason, 'no indicado')
      || '. Revisa el historial y continúa la atención.',
    'high', 'pending', 'handoff', p_conversation_id, v_conv.contact_id, v_assignee, true)
  returning id into v_task_id;
  if v_assignee is not null and v_conv.assigned_to is null then
    update public.conversations set assigned_to = v_assignee where id = p_conversation_id;
  end if;

  select cfg.handoff_message into v_message
    from public.workspace_agent_config cfg where cfg.workspace_id = v_conv.workspace_id;
  if coalesce(btrim(v_message), '') <> '' then
    insert into public.messages
      (workspace_id, conversation_id, direction, type, content, status, sent_by_agent,
       outbox_kind, outbox_position, delay_ms, timestamp)
    values (v_conv.workspace_id, p_conversation_id, 'outbound', 'text',
            jsonb_build_object('body', v_message), 'pending', true, 'handoff', 0, 0, now())
    returning id into v_message_id;
  end if;

  return jsonb_build_object(
    'handed_off', true, 'task_id', v_task_id, 'assignee', v_assignee,
    'message_id', v_message_id);
end;
$$;
comment on function private.handoff_conversation(uuid, text, bigint, uuid[]) is
  'Hands a conversation to a human atomically (bot off, session closed, high-priority task with a round-robin assignee, handoff message queued). Worker only.';

revoke execute on function private.handoff_conversation(uuid, text, bigint, uuid[]) from public;
grant execute on function private.handoff_conversation(uuid, text, bigint, uuid[]) to service_role;
