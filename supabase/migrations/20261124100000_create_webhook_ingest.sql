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
        and not (v_current = 'failed' and v_new_rank < 2) then
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
-- never will apply. The intake calls it whenever it keeps new orphans, so the table stays small
-- without a scheduler; the sweeper may call it too. Rows another transaction is deleting are
-- skipped, never waited for. Returns how many went.
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
-- A customer's conversation and contact, found by WhatsApp identity: the BSUID match first, then
-- the phone's. Two lookups, each through its unique index on (workspace_id, bsuid) or
-- (workspace_id, phone): a single statement with an OR of both keys would get one cached plan
-- for any parameters, a scan of every row of the workspace. The agent turn uses them too.
-- ---------------------------------------------------------------------------------------------
create or replace function private.find_conversation(
  p_workspace_id uuid, p_bsuid text, p_phone text
) returns uuid
language plpgsql
stable
set search_path = ''
as $$
declare
  v_id uuid;
begin
  if p_bsuid is not null then
    select c.id into v_id from public.conversations c
     where c.workspace_id = p_workspace_id and c.bsuid = p_bsuid;
    if found then
      return v_id;
    end if;
  end if;
  if p_phone is not null then
    select c.id into v_id from public.conversations c
     where c.workspace_id = p_workspace_id and c.phone = p_phone;
  end if;
  return v_id;
end;
$$;

create or replace function private.find_contact(
  p_workspace_id uuid, p_bsuid text, p_phone text
) returns uuid
language plpgsql
stable
set search_path = ''
as $$
declare
  v_id uuid;
begin
  if p_bsuid is not null then
    select ct.id into v_id from public.contacts ct
     where ct.workspace_id = p_workspace_id and ct.bsuid = p_bsuid;
    if found then
      return v_id;
    end if;
  end if;
  if p_phone is not null then
    select ct.id into v_id from public.contacts ct
     where ct.workspace_id = p_workspace_id and ct.phone = p_phone;
  end if;
  return v_id;
end;
$$;

revoke execute on function private.find_conversation(uuid, text, text) from public;
revoke execute on function private.find_contact(uuid, text, text) from public;
grant execute on function private.find_conversation(uuid, text, text),
  private.find_contact(uuid, text, text) to service_role;

-- ---------------------------------------------------------------------------------------------
-- The intake call. Per stored message: the channel (looked up once per business number), the
-- conversation (created when missing; a concurrent delivery's row wins), the message insert and
-- one conversation update that fills the identity fields it lacks, the last-message fields and
-- the contact with the same identity. A wamid another workspace already holds is not a
-- duplicate: the message is stored without it (error_code wamid_conflict), never dropped. Per
-- status: its channel, then the message of that channel, else an orphan (at most
-- max_orphans_per_post per call; the raw event keeps the rest). The raw event is written last,
-- with its outcome, in the same transaction: all of it or nothing.
-- ---------------------------------------------------------------------------------------------
create or replace function public.ingest_whatsapp_webhook(
  p_provider text,
  p_payload jsonb,
  p_messages jsonb default '[]'::jsonb,
  p_statuses jsonb default '[]'::jsonb
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
  v_message_id uuid;
  v_phone text;
  v_bsuid text;
  v_profile_name text;
  v_wamid text;
  v_ts timestamptz;
  v_inbound boolean;
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

    -- The conversation with this identity (BSUID match first), created when there is none.
    for attempt in 1..2 loop
      v_conversation_id := private.find_conversation(v_workspace_id, v_bsuid, v_phone);
      if v_conversation_id is not null then
        select c.contact_id, c.phone, c.bsuid into v_contact_id, v_conv_phone, v_conv_bsuid
          from public.conversations c where c.id = v_conversation_id;
      end if;
      exit when v_conversation_id is not null;
      begin
        insert into public.conversations
          (workspace_id, channel_id, phone_number_id, phone, bsuid, profile_name)
        values (v_workspace_id, v_channel_id, v_pnid, v_phone, v_bsuid, v_profile_name)
        returning id, contact_id, phone, bsuid
          into v_conversation_id, v_contact_id, v_conv_phone, v_conv_bsuid;
      exception when unique_violation then
        null;  -- a concurrent delivery created it: read the winner's row on the next pass
      end;
      exit when v_conversation_id is not null;
    end loop;
    if v_conversation_id is null then
      raise exception 'could not create the conversation for % / %', v_phone, v_bsuid
        using errcode = '40001';
    end if;

    insert into public.messages
      (workspace_id, conversation_id, wamid, direction, type, content, status, timestamp,
       processed_by_agent, sent_by_agent, context_wamid)
    values (
      v_workspace_id, v_conversation_id, v_wamid,
      case when v_inbound then 'inbound' else 'outbound' end,
      coalesce(m ->> 'type', 'unknown'), coalesce(m -> 'content', '{}'::jsonb),
      case when v_inbound then null else 'sent' end,
      v_ts, not v_inbound, false, m ->> 'context_wamid')
    on conflict (wamid) do nothing
    returning id into v_message_id;

    if v_message_id is null then
      -- Held by another workspace: not a redelivery of this one's message. Stored without the
      -- wamid (unique) rather than dropped; the raw event and error_message keep it.
      select m.workspace_id into v_holder from public.messages m where m.wamid = v_wamid;
      if v_holder is distinct from v_workspace_id then
        insert into public.messages
          (workspace_id, conversation_id, direction, type, content, status, timestamp,
           processed_by_agent, sent_by_agent, context_wamid, error_code, error_message)
        values (
          v_workspace_id, v_conversation_id,
          case when v_inbound then 'inbound' else 'outbound' end,
          coalesce(m ->> 'type', 'unknown'), coalesce(m -> 'content', '{}'::jsonb),
          case when v_inbound then null else 'sent' end,
          v_ts, not v_inbound, false, m ->> 'context_wamid', 'wamid_conflict',
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

    if v_contact_id is null then
      v_contact_id := private.find_contact(
        v_workspace_id, coalesce(v_conv_bsuid, v_bsuid), coalesce(v_conv_phone, v_phone));
    end if;

    -- Identity fields it lacks, last-message fields, and the contact with the same WhatsApp
    -- identity when the conversation has none yet, in one row update.
    update public.conversations c
       set phone = coalesce(c.phone, v_phone),
           bsuid = coalesce(c.bsuid, v_bsuid),
           profile_name = coalesce(v_profile_name, c.profile_name),
           channel_id = coalesce(c.channel_id, v_channel_id),
           last_message_at = greatest(c.last_message_at, v_ts),
           last_message_preview =
             case when c.last_message_at is null or v_ts >= c.last_message_at
                  then left(coalesce(nullif(m -> 'content' ->> 'body', ''), '[Mensaje]'), 100)
                  else c.last_message_preview end,
           last_customer_message_at = case when v_inbound
                                           then greatest(c.last_customer_message_at, v_ts)
                                           else c.last_customer_message_at end,
           unread_count = c.unread_count + case when v_inbound then 1 else 0 end,
           is_read = case when v_inbound then false else c.is_read end,
           contact_id = coalesce(c.contact_id, v_contact_id)
     where c.id = v_conversation_id;

    if v_inbound then
      v_new := v_new || jsonb_build_object(
        'message_id', v_message_id, 'wamid', v_wamid, 'type', m ->> 'type',
        'conversation_id', v_conversation_id, 'workspace_id', v_workspace_id);
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
  if v_orphaned > 0 then
    perform private.expire_status_orphans();
  end if;

  if cardinality(v_unroutable) > 0 then
    v_unroutable := array(select distinct unnest(v_unroutable));
  end if;

  insert into public.whatsapp_webhook_events
    (provider, phone_number_ids, event_type, wa_message_ids, payload, status, processed_at,
     workspace_id, error_message)
  values (
    p_provider,
    v_pnids,
    case
      when v_message_count > 0 and v_status_count > 0 then 'mixed'
      when v_message_count > 0 then 'message'
      when v_status_count > 0 then 'status'
      else 'other' end,
    v_wamids,
    p_payload,
    case when cardinality(v_unroutable) > 0 and v_routed = 0 then 'unroutable' else 'processed' end,
    now(),
    -- Labelled only when one workspace's numbers were routed; nobody but the service role reads
    -- raw events either way.
    case when cardinality(v_workspaces) = 1 then v_workspaces[1] end,
    nullif(concat_ws('; ',
      case when cardinality(v_unroutable) > 0
           then 'unknown phone_number_id: ' || array_to_string(v_unroutable, ', ') end,
      case when v_conflicts > 0
           then v_conflicts || ' message(s) stored without their wamid: held by another workspace' end,
      case when v_dropped > 0
           then v_dropped || ' status(es) for unknown messages not kept: over '
                || c_max_orphans || ' per delivery' end), ''))
  returning id into v_event_id;

  return jsonb_build_object(
    'event_id', v_event_id,
    'new_inbound', v_new,
    'stored', v_stored,
    'duplicates', v_duplicates,
    'unroutable', to_jsonb(v_unroutable),
    'statuses_applied', v_applied,
    'statuses_orphaned', v_orphaned,
    'statuses_dropped', v_dropped,
    'wamid_conflicts', v_conflicts);
end;
$$;
comment on function public.ingest_whatsapp_webhook(text, jsonb, jsonb, jsonb) is
  'Stores one WhatsApp webhook POST (raw event, conversations, messages, statuses) atomically and returns the new inbound messages. Service role only.';

revoke execute on function public.ingest_whatsapp_webhook(text, jsonb, jsonb, jsonb) from public, anon, authenticated;
grant execute on function public.ingest_whatsapp_webhook(text, jsonb, jsonb, jsonb) to service_role;

-- Readiness probe of the API: proves PostgREST (or its stand-in) and the database answer.
create or replace function public.bridge_ready()
returns boolean
language sql
stable
set search_path = ''
as $$ select true $$;
revoke execute on function public.bridge_ready() from public, anon, authenticated;
grant execute on function public.bridge_ready() to service_role;
