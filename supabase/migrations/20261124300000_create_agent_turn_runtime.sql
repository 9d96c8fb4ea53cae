-- =============================================================================================
-- What the worker's agent turn needs beyond the inbox tables: a fencing token per conversation,
-- the outbox columns on messages, the "is the agent on?" rule and the handoff transaction.
-- =============================================================================================

-- ---------------------------------------------------------------------------------------------
-- Fencing. The worker holds a session advisory lock per conversation for a whole turn; a dropped
-- connection frees that lock silently, so each holder also bumps this epoch when it takes the
-- lock, and every write and send of its turn checks the epoch is still its own.
-- ---------------------------------------------------------------------------------------------
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
language sql
set search_path = ''
as $$
  insert into public.conversation_turn_fences as f (conversation_id, epoch, holder, acquired_at)
  values (p_conversation_id, 1, p_holder, now())
  on conflict (conversation_id) do update
     set epoch = f.epoch + 1, holder = excluded.holder, acquired_at = excluded.acquired_at
  returning epoch
$$;
comment on function private.claim_turn_fence(uuid, text) is
  'Called right after taking the conversation''s advisory lock: a new epoch fences off any earlier holder.';

create or replace function private.assert_turn_fence(p_conversation_id uuid, p_epoch bigint)
returns void
language plpgsql
set search_path = ''
as $$
begin
  if not exists (
    select 1 from public.conversation_turn_fences f
     where f.conversation_id = p_conversation_id and f.epoch = p_epoch
  ) then
    raise exception 'turn fence lost for conversation % (epoch %)', p_conversation_id, p_epoch
      using errcode = 'WBF01', hint = 'another worker owns this conversation now';
  end if;
end;
$$;

-- ---------------------------------------------------------------------------------------------
-- Outbox: the engine's replies (and the handoff message) are messages rows written BEFORE any
-- send, with status pending; the sender moves each through sending to sent / failed / unknown /
-- skipped. `sent_by_agent` is set when the row is written, so it is exact by construction.
-- ---------------------------------------------------------------------------------------------
alter table public.messages
  add column agent_turn_id uuid references public.agent_turns (id) on delete set null,
  add column outbox_kind text check (outbox_kind in ('reply', 'handoff')),
  add column outbox_position int,
  add column delay_ms int,
  add column send_attempts int not null default 0,
  add column skip_reason text;
comment on column public.messages.agent_turn_id is
  'The agent turn that produced this outbound message, or that consumed this inbound one.';
comment on column public.messages.outbox_kind is 'reply: an engine reply; handoff: the handoff message.';
comment on column public.messages.delay_ms is 'Pause before sending at response_speed 1.0.';
comment on column public.messages.skip_reason is
  'Why an outbox message was not sent (agent disabled, newer inbound message, window closed, ...).';

create index messages_outbox_idx on public.messages (conversation_id, outbox_position)
  where status in ('pending', 'sending');
create index messages_agent_turn_id_idx on public.messages (agent_turn_id)
  where agent_turn_id is not null;

-- ---------------------------------------------------------------------------------------------
-- The agent answers a conversation when the workspace switch is on AND the conversation's
-- override is not false (null inherits; a per-conversation true never beats a global off).
-- ---------------------------------------------------------------------------------------------
create or replace function private.is_agent_enabled(p_conversation_id uuid)
returns boolean
language sql
stable
set search_path = ''
as $$
  select coalesce((
    select cfg.agent_enabled and coalesce(c.agent_conversational, true)
      from public.conversations c
      join public.workspace_agent_config cfg on cfg.workspace_id = c.workspace_id
     where c.id = p_conversation_id), false)
$$;

-- ---------------------------------------------------------------------------------------------
-- Handoff, in one transaction: bot off for this conversation (agent_crm untouched), the active
-- session closed as handed off, a high-priority task for the conversation AND its contact,
-- assigned round-robin (unassigned when nobody is online), and the workspace's handoff message
-- queued in the outbox. Does nothing when the agent was switched off meanwhile.
-- ---------------------------------------------------------------------------------------------
create or replace function private.handoff_conversation(
  p_conversation_id uuid, p_reason text, p_epoch bigint default null
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
  v_who := coalesce(v_conv.contact_name, v_conv.profile_name, v_conv.phone, v_conv.bsuid);
  insert into public.tasks
    (workspace_id, title, description, priority, status, type, conversation_id, contact_id,
     assigned_to)
  values (
    v_conv.workspace_id,
    'Handoff: atender conversación de ' || v_who,
    'El agente pasó la conversación a una persona. Motivo: ' || coalesce(p_reason, 'no indicado')
      || '. Revisa el historial y continúa la atención.',
    'high', 'pending', 'handoff', p_conversation_id, v_conv.contact_id, v_assignee)
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
comment on function private.handoff_conversation(uuid, text, bigint) is
  'Hands a conversation to a human atomically (bot off, session closed, high-priority task with a round-robin assignee, handoff message queued). Worker only.';

revoke execute on function private.claim_turn_fence(uuid, text) from public;
revoke execute on function private.assert_turn_fence(uuid, bigint) from public;
revoke execute on function private.is_agent_enabled(uuid) from public;
revoke execute on function private.handoff_conversation(uuid, text, bigint) from public;
grant execute on function private.claim_turn_fence(uuid, text), private.assert_turn_fence(uuid, bigint),
  private.is_agent_enabled(uuid), private.handoff_conversation(uuid, text, bigint) to service_role;
