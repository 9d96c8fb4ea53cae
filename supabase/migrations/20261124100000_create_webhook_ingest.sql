-- =============================================================================================
-- Webhook intake: one call stores a whole WhatsApp webhook POST in one transaction.
-- A body signed the 360dialog way only reaches channels of that provider, and a Meta-signed one
-- only Meta channels: the provider is part of the route.
-- The bridge parses the body into normalised message and status rows and calls
-- public.ingest_whatsapp_webhook through PostgREST; the function routes each change to its
-- workspace, finds or creates the conversation, inserts messages idempotently (unique wamid),
-- applies statuses monotonically to messages of the reporting channel, stores the raw event with
-- its outcome and returns the inbound messages that are NEW.
-- =============================================================================================

-- ---------------------------------------------------------------------------------------------
-- Delivery statuses. A status applies only to a message of the channel (phone_number_id and
-- provider) that reported it: wamids are unique, but a status naming another tenant's wamid must
-- not move that tenant's message. Those that arrive before their message row exists (a status
-- webhook can beat the sender's own write of the wamid) wait as orphans until the message
-- appears, for a day at most.
-- ---------------------------------------------------------------------------------------------
create table public.message_status_orphans (
  id bigint generated always as identity primary key,
  wamid text not null,
  channel_id uuid references public.whatsapp_channels (id) on delete cascade,
  status text not null,
  status_timestamp timestamptz not null default now(),
  error_code text,
  error_message text,
  received_at timestamptz not null default now()
);
comment on table public.message_status_orphans is
  'Delivery statuses received for a wamid no message row of their channel has yet; applied when it appears, expired after a day.';
comment on column public.message_status_orphans.channel_id is
  'The channel that reported the status; it applies only to a message of a conversation on that channel. The intake always sets it; null (a row written by hand) matches any channel.';
create index message_status_orphans_wamid_idx on public.message_status_orphans (wamid);
create index message_status_orphans_channel_id_idx on public.message_status_orphans (channel_id);
create index message_status_orphans_received_at_idx on public.message_status_orphans (received_at);
alter table public.message_status_orphans enable row level security;
-- No policies: only the service role (which bypasses RLS) reads or writes these rows, and only it
-- needs the identity's sequence.
revoke all on public.message_status_orphans from anon, authenticated;
revoke all on sequence public.message_status_orphans_id_seq from anon, authenticated;

-- Delivery order of a status; failed sits outside the ladder.
create or replace function private.message_status_rank(p_status text)
returns int
language sql
immutable
set search_path = ''
as $$
  select case p_status
    when 'pending' then 0 when 'sending' then 0 when 'unknown' then 0 when 'skipped' then 0
    when 'failed' then 0
    when 'sent' then 1 when 'delivered' then 2 when 'read' then 3 when 'played' then 4
    else null end
$$;

-- Apply one status to the message with that wamid on that channel, never moving it backwards:
-- sent < delivered < read < played. `failed` applies only before delivery and keeps its error;
-- a later delivered/read (WhatsApp multi-device) still upgrades it, the error staying on record.
-- Returns false when no message of the channel has that wamid (the caller keeps the status as an
-- orphan). A null channel matches any (only orphans written by hand have none).
create or replace function private.apply_message_status(
  p_channel_id uuid, p_wamid text, p_status text, p_timestamp timestamptz, p_error_code text,
  p_error_message text
) returns boolean
language plpgsql
set search_path = ''
as $$
declare
  v_id uuid;
  v_current text;
  v_new_rank int := private.message_status_rank(p_status);
begin
  select m.id, m.status into v_id, v_current
  from public.messages m
  join public.conversations c on c.id = m.conversation_id
  where m.wamid = p_wamid and (p_channel_id is null or c.channel_id = p_channel_id)
  for update of m;
  if not found then
    return false;
  end if;
  if v_new_rank is null then
    return true;  -- a status we do not track (e.g. "deleted"): the raw event keeps it
  end if;
  if p_status = 'failed' then
    if coalesce(private.message_status_rank(v_current), 0) < 2 and v_current is distinct from 'failed' then
      update public.messages
         set status = 'failed', status_timestamp = p_timestamp,
             error_code = p_error_code, error_message = p_error_message
       where id = v_id;
    end if;
  elsif v_new_rank > coalesce(private.message_status_rank(v_current), 0)
        -- `is distinct from`: a row without a status (null) takes any ladder status.
        and not (v_current is not distinct from 'failed' and v_new_rank < 2) then
    update public.messages
       set status = p_status, status_timestamp = p_timestamp
     where id = v_id;
  end if;
  return true;
end;
$$;

-- Apply (and forget) the statuses that arrived, from its own channel, before the message with
-- this wamid. Orphans reported by another channel stay until they expire.
create or replace function private.apply_orphan_statuses(p_wamid text)
returns int
language plpgsql
set search_path = ''
as $$
declare
  o record;
  n int := 0;
begin
  for o in
    delete from public.message_status_orphans so
     where so.wamid = p_wamid
       and (so.channel_id is null
            or so.channel_id = (select c.channel_id from public.messages m
                                  join public.conversations c on c.id = m.conversation_id
                                 where m.wamid = p_wamid))
    returning so.channel_id, so.status, so.status_timestamp, so.error_code, so.error_message
  loop
    perform private.apply_message_status(
      o.channel_id, p_wamid, o.status, o.status_timestamp, o.error_code, o.error_message);
    n := n + 1;
  end loop;
  return n;
end;
$$;

-- Orphans older than p_max_age: their message never appeared (or is another channel's), so they
-- never will apply. The intake calls it on every delivery that carries statuses, so the table
-- stays small without a scheduler; the sweeper may call it too. Rows another transaction is
-- deleting are skipped, never waited for. Returns how many went.
create or replace function private.expire_status_orphans(p_max_age interval default interval '1 day')
returns int
language plpgsql
set search_path = ''
as $$
declare
  v_count int;
begin
  delete from public.message_status_orphans o
   where o.id in (select x.id from public.message_status_orphans x
                   where x.received_at < now() - p_max_age
                   order by x.received_at
                   limit 10000
                   for update skip locked);
  get diagnostics v_count = row_count;
  return v_count;
end;
$$;
comment on function private.expire_status_orphans(interval) is
  'Deletes orphan statuses older than p_max_age (a day by default), at most 10000 per call; returns how many. Service role only.';

revoke execute on function private.message_status_rank(text) from public;
revoke execute on function private.apply_message_status(uuid, text, text, timestamptz, text, text) from public;
revoke execute on function private.apply_orphan_statuses(text) from public;
revoke execute on function private.expire_status_orphans(interval) from public;
grant execute on function private.message_status_rank(text),
  private.apply_message_status(uuid, text, text, timestamptz, text, text),
  private.apply_orphan_statuses(text), private.expire_status_orphans(interval) to service_role;

-- ---------------------------------------------------------------------------------------------
-- Reactions, edits and revokes act on the message they target, within the same conversation
-- only (a customer cannot touch another conversation's, or tenant's, rows). The acting message
-- is stored too (linked by context_wamid, never handed to the agent); this applies it to the
-- target: a reaction is kept on the target by who reacted (an empty emoji removes it), an edit
-- replaces the content keeping the first version under `original`, a revoke marks the target
-- revoked. An older action arriving late never overwrites a newer one. False when the target is
-- not (yet) stored.
-- ---------------------------------------------------------------------------------------------
create or replace function private.apply_message_action(
  p_conversation_id uuid, p_message jsonb, p_timestamp timestamptz
) returns boolean
language plpgsql
set search_path = ''
as $$
declare
  v_type text := p_message ->> 'type';
  v_target record;
  v_who text := coalesce(nullif(p_message ->> 'phone', ''), nullif(p_message ->> 'bsuid', ''));
  v_emoji text := nullif(p_message #>> '{content,emoji}', '');
  v_edited jsonb := p_message #> '{content,edited}';
begin
  select m.id, m.content, m.reactions, m.edited_at, m.direction into v_target
    from public.messages m
   where m.wamid = p_message ->> 'target_wamid' and m.conversation_id = p_conversation_id
   for update;
  if not found then
    return false;
  end if;
  if v_type = 'reaction' and v_who is not null then
    if (v_target.reactions #>> array[v_who, 'at'])::timestamptz > p_timestamp then
      return true;  -- a newer reaction of the same person is already applied
    end if;
    update public.messages m
       set reactions = case when v_emoji is null then m.reactions - v_who
                            else m.reactions || jsonb_build_object(v_who, jsonb_build_object(
                                   'emoji', v_emoji, 'wamid', p_message ->> 'wamid',
                                   'at', p_timestamp)) end
     where m.id = v_target.id;
  elsif v_type = 'edit' and v_target.direction = 'inbound'
        and jsonb_typeof(v_edited) = 'object'
        and (v_target.edited_at is null or v_target.edited_at <= p_timestamp) then
    update public.messages m
       set content = v_edited || jsonb_build_object(
                       'original', coalesce(m.content -> 'original', m.content)),
           edited_at = p_timestamp
     where m.id = v_target.id;
  elsif v_type = 'revoke' and v_target.direction = 'inbound' then
    update public.messages m
       set revoked_at = coalesce(m.revoked_at, p_timestamp)
     where m.id = v_target.id;
  end if;
  return true;
end;
$$;
comment on function private.apply_message_action(uuid, jsonb, timestamptz) is
  'Applies a stored reaction, edit or revoke (an intake message row with target_wamid) to its target in the same conversation; false when the target is not stored. Service role only.';

-- ---------------------------------------------------------------------------------------------
-- A message written in a WhatsApp group: stored in the group's own conversation (one per
-- workspace and group_id, created on first sight), its sender recorded on the message, never
-- in the sender's one-to-one conversation. It is not handed to the agent: the sender addresses
-- individual recipients only (workspace_agent_config.agent_answers_groups stays off in effect).
-- Returns 'stored', 'duplicate' (a redelivery) or 'conflict' (the wamid is another
-- workspace's: stored without it).
-- ---------------------------------------------------------------------------------------------
create or replace function private.ingest_group_message(
  p_workspace_id uuid, p_channel_id uuid, p_message jsonb
) returns jsonb
language plpgsql
set search_path = ''
as $$
declare
  v_group text := p_message ->> 'group_id';
  v_ts timestamptz := coalesce(to_timestamp((p_message ->> 'timestamp')::double precision), now());
  v_conversation_id uuid;
  v_message_id uuid;
  v_outcome text := 'stored';
  v_quiet boolean := coalesce(p_message ->> 'type', '') in ('reaction', 'edit', 'revoke');
  -- Answered only when the workspace lets the agent answer groups (the reply goes to the group).
  v_answer boolean;
  -- The participant's profile name travels with the message: the group has many.
  v_content jsonb := coalesce(p_message -> 'content', '{}'::jsonb)
    || jsonb_strip_nulls(jsonb_build_object('senderName',
                                            nullif(p_message ->> 'profile_name', '')));
begin
  v_answer := not v_quiet and coalesce((select cfg.agent_answers_groups
                                          from public.workspace_agent_config cfg
                                         where cfg.workspace_id = p_workspace_id), false);
  for attempt in 1..2 loop
    select c.id into v_conversation_id from public.conversations c
     where c.workspace_id = p_workspace_id and c.group_id = v_group;
    exit when v_conversation_id is not null;
    insert into public.conversations (workspace_id, channel_id, phone_number_id, group_id)
    values (p_workspace_id, p_channel_id, p_message ->> 'phone_number_id', v_group)
    on conflict do nothing
    returning id into v_conversation_id;
    exit when v_conversation_id is not null;
  end loop;
  if v_conversation_id is null then
    raise exception 'could not create the conversation of group %', v_group using errcode = '40001';
  end if;

  insert into public.messages
    (workspace_id, conversation_id, wamid, direction, type, content, timestamp,
     processed_by_agent, context_wamid, sender_phone, sender_bsuid)
  values (p_workspace_id, v_conversation_id, p_message ->> 'wamid', 'inbound',
          coalesce(p_message ->> 'type', 'unknown'), v_content,
          v_ts, not v_answer, coalesce(p_message ->> 'context_wamid', p_message ->> 'target_wamid'),
          nullif(p_message ->> 'phone', ''), nullif(p_message ->> 'bsuid', ''))
  on conflict (wamid) do nothing
  returning id into v_message_id;
  if v_message_id is null then
    if exists (select 1 from public.messages m
                where m.wamid = p_message ->> 'wamid' and m.workspace_id = p_workspace_id) then
      return jsonb_build_object('outcome', 'duplicate');
    end if;
    insert into public.messages
      (workspace_id, conversation_id, direction, type, content, timestamp, processed_by_agent,
       context_wamid, sender_phone, sender_bsuid, error_code, error_message)
    values (p_workspace_id, v_conversation_id, 'inbound',
            coalesce(p_message ->> 'type', 'unknown'), v_content, v_ts, true,
            coalesce(p_message ->> 'context_wamid', p_message ->> 'target_wamid'),
            nullif(p_message ->> 'phone', ''), nullif(p_message ->> 'bsuid', ''),
            'wamid_conflict',
            'wamid ' || (p_message ->> 'wamid') || ' is already held by another workspace''s message');
    v_outcome := 'conflict';
    v_answer := false;
  end if;
  if v_quiet and p_message ->> 'target_wamid' is not null then
    perform private.apply_message_action(v_conversation_id, p_message, v_ts);
  end if;
  update public.conversations c
     set last_message_at = greatest(c.last_message_at, v_ts),
         last_message_preview =
           case when not v_quiet and (c.last_message_at is null or v_ts >= c.last_message_at)
                then left(coalesce(nullif(p_message -> 'content' ->> 'body', ''), '[Mensaje]'), 100)
                else c.last_message_preview end,
         unread_count = c.unread_count + case when v_quiet then 0 else 1 end,
         is_read = case when v_quiet then c.is_read else false end
   where c.id = v_conversation_id;
  return jsonb_build_object('outcome', v_outcome, 'answer', v_answer,
                            'message_id', v_message_id, 'conversation_id', v_conversation_id);
end;
$$;
comment on function private.ingest_group_message(uuid, uuid, jsonb) is
  'Stores one intake message row that carries group_id in the group''s own conversation (created on first sight); handed to the agent (answer: true) only when the workspace lets it answer groups. Service role only.';

revoke execute on function private.apply_message_action(uuid, jsonb, timestamptz) from public;
revoke execute on function private.ingest_group_message(uuid, uuid, jsonb) from public;
grant execute on function private.apply_message_action(uuid, jsonb, timestamptz),
  private.ingest_group_message(uuid, uuid, jsonb) to service_role;

-- ---------------------------------------------------------------------------------------------
-- The intake call. Per stored message: the channel (looked up once per business number), the
-- conversation (created when missing; a concurrent delivery's row wins), the message insert and
-- one conversation update that fills the identity fields it lacks, the last-message fields and
-- the contact with the same identity. A wamid another workspace already holds is not a
-- duplicate: the message is stored without it (error_code wamid_conflict), never dropped. Per
-- status: its channel, then the message of that channel, else an orphan (at most
-- max_orphans_per_post per call; the raw event keeps the rest). The raw event is written last,
-- with its outcome, in the same transaction.
-- The work runs in a block with an exception handler (a savepoint): when the database refuses
-- the batch for a data reason (a bad value, a constraint, a bug in this SQL), the work rolls
-- back but the raw event is still committed, as `failed` with the error, and the call returns
-- `failed: true` (the webhook answers 200: a redelivery cannot fix it, `bridge replay` can once
-- the cause is fixed). A failing redelivery of the same body bumps that event's attempts rather
-- than adding a row. A transient failure (private.webhook_error_is_transient) still raises: the
-- provider retries. p_replay_of (`bridge replay`) processes a stored event again, recording the
-- outcome on that event instead of a new one.
-- ---------------------------------------------------------------------------------------------

-- Whether an error may pass on a later attempt with the same input, nobody changing anything:
-- the connection, a conflict with another transaction (serialization, deadlock, lock timeout),
-- the server out of resources, shutting down, read-only (a failover) or failing to read its
-- disk. Anything else (data exceptions 22, constraints 23, SQL errors 42, our own raises P0,
-- internal errors XX such as a corrupt index) needs someone to act first, so the event is kept as
-- failed rather than retried for days and dropped. A statement timeout (57014) never reaches a
-- handler: PL/pgSQL's OTHERS does not catch it.
create or replace function private.webhook_error_is_transient(p_sqlstate text)
returns boolean
language sql
immutable
set search_path = ''
as $$
  select left(p_sqlstate, 2) in ('08', '40', '53', '57', '58')
      or p_sqlstate in ('55P03', '55006', '25006', '25P03', '25P04', '72000')
$$;
comment on function private.webhook_error_is_transient(text) is
  'Whether a SQLSTATE raised while storing a webhook batch is transient (the provider should retry) rather than a reason to keep the batch as failed. Service role only.';
revoke execute on function private.webhook_error_is_transient(text) from public;
grant execute on function private.webhook_error_is_transient(text) to service_role;

create or replace function public.ingest_whatsapp_webhook(
  p_provider text,
  p_payload jsonb,
  p_messages jsonb default '[]'::jsonb,
  p_statuses jsonb default '[]'::jsonb,
  p_replay_of uuid default null,
  p_refused text default null
) returns jsonb
language plpgsql
set search_path = ''
as $$
declare
  v_messages jsonb := coalesce(p_messages, '[]'::jsonb);
  v_statuses jsonb := coalesce(p_statuses, '[]'::jsonb);
  v_message_count int;
  v_status_count int;
  v_event_id uuid;
  m jsonb;
  s jsonb;
  v_pnid text;
  v_looked_up boolean := false;
  v_looked_up_pnid text;
  v_channel_id uuid;
  v_workspace_id uuid;
  v_conversation_id uuid;
  v_contact_id uuid;
  v_conv_phone text;
  v_conv_bsuid text;
  v_merged uuid[];  -- conversations a customer's resolution merged away
  v_requeue jsonb;  -- their unprocessed inbound messages, now the survivor's
  v_identity_pnids text[] := '{}'::text[];  -- business numbers whose identifiers are locked
  v_message_id uuid;
  v_phone text;
  v_bsuid text;
  v_profile_name text;
  v_wamid text;
  v_ts timestamptz;
  v_inbound boolean;
  v_quiet boolean;  -- history, reactions, edits, revokes: stored, never answered nor unread
  v_new jsonb := '[]'::jsonb;
  v_unroutable text[] := '{}'::text[];
  v_routed int := 0;
  v_duplicates int := 0;
  v_stored int := 0;
  v_applied int := 0;
  v_orphaned int := 0;
  v_pnids text[] := '{}'::text[];
  v_wamids text[] := '{}'::text[];
  v_workspaces uuid[] := '{}'::uuid[];
  v_holder uuid;
  v_conflicts int := 0;
  v_dropped int := 0;
  -- Orphans kept per call: a real POST carries a handful, so a flood is cut here, not stored.
  c_max_orphans constant int := 1000;
  v_event_type text;
  v_group_result jsonb;
  v_outcome text;
  v_note text;
  v_sqlstate text;
  v_error text;
  v_detail text;
begin
  if p_payload is null then
    raise exception 'p_payload is required' using errcode = '22004';
  end if;
  if p_provider is null or p_provider not in ('meta', '360dialog') then
    raise exception 'unknown provider %', p_provider using errcode = '22023',
      hint = 'use ''meta'' or ''360dialog''';
  end if;
  if jsonb_typeof(v_messages) <> 'array' or jsonb_typeof(v_statuses) <> 'array' then
    raise exception 'p_messages and p_statuses must be JSON arrays' using errcode = '22023';
  end if;
  v_message_count := jsonb_array_length(v_messages);
  v_status_count := jsonb_array_length(v_statuses);
  v_event_type := case
    when v_message_count > 0 and v_status_count > 0 then 'mixed'
    when v_message_count > 0 then 'message'
    when v_status_count > 0 then 'status'
    else 'other' end;
  if p_replay_of is not null then
    -- Locked for the whole call: two replays of one event run one after the other.
    perform 1 from public.whatsapp_webhook_events e
     where e.id = p_replay_of and e.provider = p_provider
       for update;
    if not found then
      raise exception 'no webhook event % from %', p_replay_of, p_provider using errcode = 'P0002';
    end if;
  end if;

  -- The work: a block of its own, so that a data error rolls back to here (see above).
  begin

  -- A signed body the webhook's normaliser could not read: kept as a failed event with the
  -- reason, for a replay once the normaliser reads it.
  if p_refused is not null then
    raise exception using errcode = 'WBR01', message = 'payload refused: ' || left(p_refused, 1900);
  end if;

  for i in 0 .. v_message_count - 1 loop
    m := v_messages -> i;
    v_pnid := m ->> 'phone_number_id';
    v_wamid := m ->> 'wamid';
    v_wamids := v_wamids || v_wamid;
    if v_pnid is not null and not v_pnid = any(v_pnids) then
      v_pnids := v_pnids || v_pnid;
    end if;
    if not v_looked_up or v_pnid is distinct from v_looked_up_pnid then
      select ch.id, ch.workspace_id into v_channel_id, v_workspace_id
      from public.whatsapp_channels ch
      where ch.phone_number_id = v_pnid and ch.provider = p_provider;
      if not found then
        v_channel_id := null;
        v_workspace_id := null;
      end if;
      v_looked_up := true;
      v_looked_up_pnid := v_pnid;
    end if;
    if v_channel_id is null then
      v_unroutable := v_unroutable || v_pnid;
      continue;
    end if;
    v_routed := v_routed + 1;
    if not v_workspace_id = any(v_workspaces) then
      v_workspaces := v_workspaces || v_workspace_id;
    end if;
    v_inbound := (m ->> 'direction') = 'inbound';
    v_ts := coalesce(to_timestamp((m ->> 'timestamp')::double precision), now());
    v_phone := nullif(m ->> 'phone', '');
    v_bsuid := nullif(m ->> 'bsuid', '');
    v_profile_name := nullif(m ->> 'profile_name', '');
    if v_phone is null and v_bsuid is null then
      raise exception 'message has neither a phone (wa_id) nor a BSUID (user_id)'
        using errcode = '22023';
    end if;
    -- A group message goes to the group's own conversation, not the sender's.
    if nullif(m ->> 'group_id', '') is not null and v_inbound then
      v_group_result := private.ingest_group_message(v_workspace_id, v_channel_id, m);
      case v_group_result ->> 'outcome'
        when 'duplicate' then v_duplicates := v_duplicates + 1;
        when 'conflict' then v_stored := v_stored + 1; v_conflicts := v_conflicts + 1;
        else v_stored := v_stored + 1;
      end case;
      if (v_group_result ->> 'answer')::boolean then
        v_new := v_new || jsonb_build_object(
          'message_id', v_group_result -> 'message_id', 'wamid', m ->> 'wamid',
          'type', m ->> 'type', 'conversation_id', v_group_result -> 'conversation_id',
          'workspace_id', v_workspace_id);
      end if;
      continue;
    end if;
    v_quiet := coalesce(m ->> 'history' = 'true', false)
               or coalesce(m ->> 'type', '') in ('reaction', 'edit', 'revoke');

    -- The customer's conversation (private.resolve_conversation): created when there is none,
    -- merged when the phone's and the BSUID's turn out to be two. Messages of this batch already
    -- listed for a merged conversation are redirected to the survivor, and the unprocessed
    -- inbound messages a merge moved are listed too, so the survivor's turn answers them.
    -- A `system` message is the customer's own notice: stored, never answered.
    v_quiet := v_quiet or coalesce(m ->> 'type', '') = 'system';
    -- Every identifier this business number's messages name, locked once, in key order: two
    -- batches naming the same customers never wait for each other in opposite orders.
    if not v_pnid = any(v_identity_pnids) then
      v_identity_pnids := v_identity_pnids || v_pnid;
      perform private.lock_customer_identity(v_workspace_id,
        array(select nullif(x ->> k, '') from jsonb_array_elements(v_messages) x,
                     unnest(array['phone', 'new_phone']) k
               where x ->> 'phone_number_id' = v_pnid),
        array(select nullif(x ->> k, '') from jsonb_array_elements(v_messages) x,
                     unnest(array['bsuid', 'new_bsuid']) k
               where x ->> 'phone_number_id' = v_pnid));
    end if;
    select r.conversation_id, r.merged, r.requeue into v_conversation_id, v_merged, v_requeue
      from private.resolve_conversation(v_workspace_id, v_channel_id, v_pnid, v_phone, v_bsuid,
                                        v_profile_name) r;
    if cardinality(v_merged) > 0 then
      v_new := (select coalesce(jsonb_agg(case when (e ->> 'conversation_id')::uuid = any(v_merged)
                                              then jsonb_set(e, '{conversation_id}',
                                                             to_jsonb(v_conversation_id))
                                              else e end), '[]'::jsonb)
                  from jsonb_array_elements(v_new) e) || v_requeue;
    end if;
    select c.contact_id, c.phone, c.bsuid into v_contact_id, v_conv_phone, v_conv_bsuid
      from public.conversations c where c.id = v_conversation_id;

    -- Rows are inserted in the body's order, so received_seq (its identity default) breaks
    -- timestamp ties the way the customer wrote. History keeps its delivery state (statuses
    -- of a backfilled outbound message never come as webhooks).
    insert into public.messages
      (workspace_id, conversation_id, wamid, direction, type, content, status, timestamp,
       processed_by_agent, sent_by_agent, context_wamid, from_history)
    values (
      v_workspace_id, v_conversation_id, v_wamid,
      case when v_inbound then 'inbound' else 'outbound' end,
      coalesce(m ->> 'type', 'unknown'), coalesce(m -> 'content', '{}'::jsonb),
      case when v_inbound then null
           when coalesce(m ->> 'history' = 'true', false)
                and coalesce(m ->> 'status', '') in ('sent', 'delivered', 'read', 'played', 'failed')
             then m ->> 'status'
           else 'sent' end,
      v_ts, not v_inbound or v_quiet, false,
      coalesce(m ->> 'context_wamid', m ->> 'target_wamid'),
      coalesce(m ->> 'history' = 'true', false))
    on conflict (wamid) do nothing
    returning id into v_message_id;

    if v_message_id is null then
      -- Held by another workspace: not a redelivery of this one's message. Stored without the
      -- wamid (unique) rather than dropped; the raw event and error_message keep it.
      select m.workspace_id into v_holder from public.messages m where m.wamid = v_wamid;
      if v_holder is distinct from v_workspace_id then
        insert into public.messages
          (workspace_id, conversation_id, direction, type, content, status, timestamp,
           processed_by_agent, sent_by_agent, context_wamid, from_history, error_code,
           error_message)
        values (
          v_workspace_id, v_conversation_id,
          case when v_inbound then 'inbound' else 'outbound' end,
          coalesce(m ->> 'type', 'unknown'), coalesce(m -> 'content', '{}'::jsonb),
          case when v_inbound then null else 'sent' end,
          v_ts, not v_inbound or v_quiet, false,
          coalesce(m ->> 'context_wamid', m ->> 'target_wamid'),
          coalesce(m ->> 'history' = 'true', false),
          'wamid_conflict',
          'wamid ' || v_wamid || ' is already held by another workspace''s message')
        returning id into v_message_id;
        v_conflicts := v_conflicts + 1;
      end if;
    end if;
    if v_message_id is null then
      v_duplicates := v_duplicates + 1;
      -- A redelivery still fills identity fields the conversation lacks.
      update public.conversations c
         set phone = coalesce(c.phone, v_phone),
             bsuid = coalesce(c.bsuid, v_bsuid),
             profile_name = coalesce(v_profile_name, c.profile_name),
             channel_id = coalesce(c.channel_id, v_channel_id)
       where c.id = v_conversation_id
         and (c.phone is null and v_phone is not null
              or c.bsuid is null and v_bsuid is not null
              or v_profile_name is not null and c.profile_name is distinct from v_profile_name
              or c.channel_id is null and v_channel_id is not null);
      continue;
    end if;
    v_stored := v_stored + 1;
    if v_wamid is not null
       and exists (select 1 from public.message_status_orphans o where o.wamid = v_wamid) then
      perform private.apply_orphan_statuses(v_wamid);
    end if;
    if coalesce(m ->> 'type', '') in ('reaction', 'edit', 'revoke')
       and m ->> 'target_wamid' is not null then
      perform private.apply_message_action(v_conversation_id, m, v_ts);
    end if;

    -- The customer's contact, under the conversation row's lock (see private.resolve_contact).
    perform 1 from public.conversations c where c.id = v_conversation_id for no key update;
    v_contact_id := private.resolve_contact(v_workspace_id, coalesce(v_conv_phone, v_phone),
                                            coalesce(v_conv_bsuid, v_bsuid), v_contact_id);
    -- A number change links the new identifiers to this customer (merging any conversation or
    -- contact that already holds them).
    if m ->> 'type' = 'system'
       and (nullif(m ->> 'new_phone', '') is not null or nullif(m ->> 'new_bsuid', '') is not null)
    then
      update public.conversations c set contact_id = coalesce(c.contact_id, v_contact_id)
       where c.id = v_conversation_id;
      select r.conversation_id, r.merged, r.requeue into v_conversation_id, v_merged, v_requeue
        from private.link_new_identity(v_conversation_id, nullif(m ->> 'new_phone', ''),
                                       nullif(m ->> 'new_bsuid', '')) r;
      if cardinality(v_merged) > 0 then
        v_new := (select coalesce(jsonb_agg(case when (e ->> 'conversation_id')::uuid = any(v_merged)
                                                then jsonb_set(e, '{conversation_id}',
                                                               to_jsonb(v_conversation_id))
                                                else e end), '[]'::jsonb)
                    from jsonb_array_elements(v_new) e) || v_requeue;
      end if;
      select c.contact_id into v_contact_id from public.conversations c
       where c.id = v_conversation_id;
    end if;

    -- Identity fields it lacks, last-message fields, and the contact with the same WhatsApp
    -- identity when the conversation has none yet, in one row update.
    update public.conversations c
       set phone = coalesce(c.phone, v_phone),
           bsuid = coalesce(c.bsuid, v_bsuid),
           profile_name = coalesce(v_profile_name, c.profile_name),
           channel_id = coalesce(c.channel_id, v_channel_id),
           last_message_at = greatest(c.last_message_at, v_ts),
           -- Reactions, edits and revokes change another message, not the last one; history
           -- never moves the last message backwards, nor counts as unread.
           last_message_preview =
             case when (c.last_message_at is null or v_ts >= c.last_message_at)
                       and coalesce(m ->> 'type', '') not in ('reaction', 'edit', 'revoke')
                  then left(coalesce(nullif(m -> 'content' ->> 'body', ''), '[Mensaje]'), 100)
                  else c.last_message_preview end,
           last_customer_message_at = case when v_inbound
                                           then greatest(c.last_customer_message_at, v_ts)
                                           else c.last_customer_message_at end,
           unread_count = c.unread_count + case when v_inbound and not v_quiet then 1 else 0 end,
           is_read = case when v_inbound and not v_quiet then false else c.is_read end,
           contact_id = coalesce(c.contact_id, v_contact_id)
     where c.id = v_conversation_id;

    if v_inbound then
      if not v_quiet then
        v_new := v_new || jsonb_build_object(
          'message_id', v_message_id, 'wamid', v_wamid, 'type', m ->> 'type',
          'conversation_id', v_conversation_id, 'workspace_id', v_workspace_id);
      end if;
    elsif m ->> 'history' is distinct from 'true' then
      -- An echo: a human replied from the WhatsApp Business app, so the bot pauses by the
      -- workspace's takeover policy (counted from the echo's time). Backfilled history is not
      -- a human speaking now.
      perform private.pause_bot_for_human(v_conversation_id, v_ts);
    end if;
  end loop;

  v_looked_up := false;
  for i in 0 .. v_status_count - 1 loop
    s := v_statuses -> i;
    v_pnid := s ->> 'phone_number_id';
    v_wamids := v_wamids || (s ->> 'wamid');
    if v_pnid is not null and not v_pnid = any(v_pnids) then
      v_pnids := v_pnids || v_pnid;
    end if;
    if not v_looked_up or v_pnid is distinct from v_looked_up_pnid then
      select ch.id, ch.workspace_id into v_channel_id, v_workspace_id
      from public.whatsapp_channels ch
      where ch.phone_number_id = v_pnid and ch.provider = p_provider;
      if not found then
        v_channel_id := null;
        v_workspace_id := null;
      end if;
      v_looked_up := true;
      v_looked_up_pnid := v_pnid;
    end if;
    if v_channel_id is null then
      v_unroutable := v_unroutable || v_pnid;
      continue;
    end if;
    v_routed := v_routed + 1;
    if not v_workspace_id = any(v_workspaces) then
      v_workspaces := v_workspaces || v_workspace_id;
    end if;
    v_ts := coalesce(to_timestamp((s ->> 'timestamp')::double precision), now());
    if private.apply_message_status(
         v_channel_id, s ->> 'wamid', s ->> 'status', v_ts, s ->> 'error_code',
         s ->> 'error_title') then
      v_applied := v_applied + 1;
    elsif v_orphaned < c_max_orphans then
      insert into public.message_status_orphans
        (wamid, channel_id, status, status_timestamp, error_code, error_message)
      values (s ->> 'wamid', v_channel_id, s ->> 'status', v_ts, s ->> 'error_code',
              s ->> 'error_title');
      v_orphaned := v_orphaned + 1;
    else
      v_dropped := v_dropped + 1;
    end if;
  end loop;
  -- Every delivery with statuses expires stale orphans, not only one that keeps new ones: a
  -- channel whose orphans stop coming would otherwise keep the last ones for good.
  if v_status_count > 0 then
    perform private.expire_status_orphans();
  end if;

  if cardinality(v_unroutable) > 0 then
    v_unroutable := array(select distinct unnest(v_unroutable));
  end if;

  v_outcome := case when cardinality(v_unroutable) > 0 and v_routed = 0
                    then 'unroutable' else 'processed' end;
  v_note := nullif(concat_ws('; ',
    case when cardinality(v_unroutable) > 0
         then 'unknown phone_number_id: ' || array_to_string(v_unroutable, ', ') end,
    case when v_conflicts > 0
         then v_conflicts || ' message(s) stored without their wamid: held by another workspace' end,
    case when v_dropped > 0
         then v_dropped || ' status(es) for unknown messages not kept: over '
              || c_max_orphans || ' per delivery' end), '');
  if p_replay_of is null then
    insert into public.whatsapp_webhook_events
      (provider, phone_number_ids, event_type, wa_message_ids, payload, status, processed_at,
       workspace_id, error_message)
    values (
      p_provider, v_pnids, v_event_type, v_wamids, p_payload, v_outcome, now(),
      -- Labelled only when one workspace's numbers were routed; nobody but the service role
      -- reads raw events either way.
      case when cardinality(v_workspaces) = 1 then v_workspaces[1] end,
      v_note)
    returning id into v_event_id;
  else
    update public.whatsapp_webhook_events e
       set status = v_outcome, error_message = v_note, error_sqlstate = null,
           phone_number_ids = v_pnids, event_type = v_event_type, wa_message_ids = v_wamids,
           workspace_id = case when cardinality(v_workspaces) = 1 then v_workspaces[1] end,
           attempts = e.attempts + 1, processed_at = now(), replayed_at = now()
     where e.id = p_replay_of
    returning e.id into v_event_id;
  end if;

  return jsonb_build_object(
    'event_id', v_event_id,
    'failed', false,
    'new_inbound', v_new,
    'stored', v_stored,
    'duplicates', v_duplicates,
    'unroutable', to_jsonb(v_unroutable),
    'statuses_applied', v_applied,
    'statuses_orphaned', v_orphaned,
    'statuses_dropped', v_dropped,
    'wamid_conflicts', v_conflicts);

  exception when others then
    get stacked diagnostics v_sqlstate = returned_sqlstate, v_error = message_text,
                            v_detail = pg_exception_detail;
    if private.webhook_error_is_transient(v_sqlstate) then
      raise;
    end if;
    v_error := left(v_sqlstate || ': ' || v_error
                    || coalesce(' (' || nullif(v_detail, '') || ')', ''), 2000);
    if p_replay_of is null then
      insert into public.whatsapp_webhook_events as e
        (provider, phone_number_ids, event_type, wa_message_ids, payload, status, error_message,
         error_sqlstate, payload_sha256, processed_at)
      values (
        p_provider,
        array(select distinct x ->> 'phone_number_id'
                from jsonb_array_elements(v_messages || v_statuses) x
               where x ->> 'phone_number_id' is not null),
        v_event_type,
        array(select x ->> 'wamid' from jsonb_array_elements(v_messages || v_statuses) x
               where x ->> 'wamid' is not null),
        p_payload, 'failed', v_error, v_sqlstate,
        pg_catalog.sha256(convert_to(p_payload::text, 'UTF8')), now())
      on conflict (payload_sha256) where status = 'failed' do update
        set attempts = e.attempts + 1, error_message = excluded.error_message,
            error_sqlstate = excluded.error_sqlstate, processed_at = excluded.processed_at
      returning e.id into v_event_id;
    else
      update public.whatsapp_webhook_events e
         set status = 'failed', error_message = v_error, error_sqlstate = v_sqlstate,
             attempts = e.attempts + 1, processed_at = now(), replayed_at = now()
       where e.id = p_replay_of
      returning e.id into v_event_id;
    end if;
    return jsonb_build_object(
      'event_id', v_event_id,
      'failed', true,
      'sqlstate', v_sqlstate,
      'error', v_error,
      'new_inbound', '[]'::jsonb,
      'stored', 0,
      'duplicates', 0,
      'unroutable', '[]'::jsonb,
      'statuses_applied', 0,
      'statuses_orphaned', 0,
      'statuses_dropped', 0,
      'wamid_conflicts', 0);
  end;
end;
$$;
comment on function public.ingest_whatsapp_webhook(text, jsonb, jsonb, jsonb, uuid, text) is
  'Stores one WhatsApp webhook POST (raw event, conversations, messages, statuses) atomically and returns the new inbound messages; a batch refused for a data reason is kept as a failed raw event (failed: true), a transient failure raises. p_replay_of processes a stored event again; p_refused keeps a body the normaliser refused as failed. Service role only.';

revoke execute on function public.ingest_whatsapp_webhook(text, jsonb, jsonb, jsonb, uuid, text) from public, anon, authenticated;
grant execute on function public.ingest_whatsapp_webhook(text, jsonb, jsonb, jsonb, uuid, text) to service_role;

-- Readiness probe of the API: proves PostgREST (or its stand-in) and the database answer.
create or replace function public.bridge_ready()
returns boolean
language sql
stable
set search_path = ''
as $$ select true $$;
revoke execute on function public.bridge_ready() from public, anon, authenticated;
grant execute on function public.bridge_ready() to service_role;
