-- =============================================================================================
-- Webhook intake: one call stores a whole WhatsApp webhook POST in one transaction.
-- A body signed the 360dialog way only reaches channels of that provider, and a Meta-signed one
-- only Meta channels: the provider is part of the route.
-- The bridge parses the body into normalised message and status rows and calls
-- public.ingest_whatsapp_webhook through PostgREST; the function stores the raw event, routes
-- each change to its workspace, upserts conversations, inserts messages idempotently (unique
-- wamid), applies statuses monotonically and returns the inbound messages that are NEW.
-- =============================================================================================

-- Statuses that arrive before their message row exists (a status webhook can beat the sender's
-- own write of the wamid). They are applied when the message appears.
create table public.message_status_orphans (
  id bigint generated always as identity primary key,
  wamid text not null,
  status text not null,
  status_timestamp timestamptz not null default now(),
  error_code text,
  error_message text,
  received_at timestamptz not null default now()
);
comment on table public.message_status_orphans is
  'Delivery statuses received for a wamid no message row has yet; applied when it appears.';
create index message_status_orphans_wamid_idx on public.message_status_orphans (wamid);
alter table public.message_status_orphans enable row level security;
-- No policies: only the service role (which bypasses RLS) reads or writes these rows.
revoke all on public.message_status_orphans from anon, authenticated;

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

-- Apply one status to the message with that wamid, never moving it backwards:
-- sent < delivered < read < played. `failed` applies only before delivery and keeps its error;
-- a later delivered/read (WhatsApp multi-device) still upgrades it, the error staying on record.
-- Returns false when no message has that wamid (the caller keeps the status as an orphan).
create or replace function private.apply_message_status(
  p_wamid text, p_status text, p_timestamp timestamptz, p_error_code text, p_error_message text
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
  from public.messages m where m.wamid = p_wamid
  for update;
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

-- Apply (and forget) the statuses that arrived before the message with this wamid.
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
    delete from public.message_status_orphans where wamid = p_wamid
    returning status, status_timestamp, error_code, error_message
  loop
    perform private.apply_message_status(
      p_wamid, o.status, o.status_timestamp, o.error_code, o.error_message);
    n := n + 1;
  end loop;
  return n;
end;
$$;

-- The conversation of one customer in one workspace, created when missing. Customers are keyed
-- by BSUID when WhatsApp gives one and by phone otherwise; a row found by either learns the other.
create or replace function private.upsert_conversation(
  p_workspace_id uuid, p_channel_id uuid, p_phone_number_id text,
  p_phone text, p_bsuid text, p_profile_name text
) returns uuid
language plpgsql
set search_path = ''
as $$
declare
  v_id uuid;
begin
  if p_phone is null and p_bsuid is null then
    raise exception 'message has neither a phone (wa_id) nor a BSUID (user_id)'
      using errcode = '22023';
  end if;
  for attempt in 1..2 loop
    select c.id into v_id
    from public.conversations c
    where c.workspace_id = p_workspace_id
      and ((p_bsuid is not null and c.bsuid = p_bsuid) or (p_phone is not null and c.phone = p_phone))
    order by (c.bsuid is not distinct from p_bsuid) desc
    limit 1;
    if found then
      update public.conversations c
         set phone = coalesce(c.phone, p_phone),
             bsuid = coalesce(c.bsuid, p_bsuid),
             profile_name = coalesce(p_profile_name, c.profile_name),
             channel_id = coalesce(c.channel_id, p_channel_id)
       where c.id = v_id
         and (c.phone is null and p_phone is not null
              or c.bsuid is null and p_bsuid is not null
              or p_profile_name is not null and c.profile_name is distinct from p_profile_name
              or c.channel_id is null and p_channel_id is not null);
      return v_id;
    end if;
    begin
      insert into public.conversations
        (workspace_id, channel_id, phone_number_id, phone, bsuid, profile_name)
      values (p_workspace_id, p_channel_id, p_phone_number_id, p_phone, p_bsuid, p_profile_name)
      returning id into v_id;
      return v_id;
    exception when unique_violation then
      null;  -- a concurrent delivery created it: read the winner's row on the next pass
    end;
  end loop;
  raise exception 'could not create the conversation for % / %', p_phone, p_bsuid
    using errcode = '40001';
end;
$$;

-- Link the conversation to an existing contact with the same WhatsApp identity (the worker
-- creates one when there is none).
create or replace function private.link_existing_contact(p_conversation_id uuid)
returns void
language sql
set search_path = ''
as $$
  update public.conversations c
     set contact_id = (
       select ct.id from public.contacts ct
        where ct.workspace_id = c.workspace_id
          and ((c.bsuid is not null and ct.bsuid = c.bsuid)
               or (c.phone is not null and ct.phone = c.phone))
        order by (ct.bsuid is not distinct from c.bsuid) desc
        limit 1)
   where c.id = p_conversation_id and c.contact_id is null
     and exists (
       select 1 from public.contacts ct
        where ct.workspace_id = c.workspace_id
          and ((c.bsuid is not null and ct.bsuid = c.bsuid)
               or (c.phone is not null and ct.phone = c.phone)));
$$;

create or replace function private.message_preview(p_content jsonb)
returns text
language sql
immutable
set search_path = ''
as $$
  select left(coalesce(nullif(p_content ->> 'body', ''), '[Mensaje]'), 100)
$$;

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
  v_event_id uuid;
  m jsonb;
  s jsonb;
  v_channel record;
  v_conversation_id uuid;
  v_message_id uuid;
  v_ts timestamptz;
  v_inbound boolean;
  v_new jsonb := '[]'::jsonb;
  v_unroutable text[] := '{}';
  v_routed text[] := '{}';
  v_duplicates int := 0;
  v_stored int := 0;
  v_applied int := 0;
  v_orphaned int := 0;
  v_pnids text[];
begin
  if p_payload is null then
    raise exception 'p_payload is required' using errcode = '22004';
  end if;
  if p_provider is null or p_provider not in ('meta', '360dialog') then
    raise exception 'unknown provider %', p_provider using errcode = '22023',
      hint = 'use ''meta'' or ''360dialog''';
  end if;
  if jsonb_typeof(coalesce(p_messages, '[]')) <> 'array'
     or jsonb_typeof(coalesce(p_statuses, '[]')) <> 'array' then
    raise exception 'p_messages and p_statuses must be JSON arrays' using errcode = '22023';
  end if;

  select array_agg(distinct x) into v_pnids
  from (
    select e ->> 'phone_number_id' as x from jsonb_array_elements(coalesce(p_messages, '[]')) e
    union all
    select e ->> 'phone_number_id' from jsonb_array_elements(coalesce(p_statuses, '[]')) e
  ) ids where x is not null;

  insert into public.whatsapp_webhook_events
    (provider, phone_number_ids, event_type, wa_message_ids, payload, status)
  values (
    p_provider,
    coalesce(v_pnids, '{}'),
    case
      when jsonb_array_length(coalesce(p_messages, '[]')) > 0
       and jsonb_array_length(coalesce(p_statuses, '[]')) > 0 then 'mixed'
      when jsonb_array_length(coalesce(p_messages, '[]')) > 0 then 'message'
      when jsonb_array_length(coalesce(p_statuses, '[]')) > 0 then 'status'
      else 'other' end,
    array(
      select e ->> 'wamid' from jsonb_array_elements(coalesce(p_messages, '[]')) e
      union all
      select e ->> 'wamid' from jsonb_array_elements(coalesce(p_statuses, '[]')) e),
    p_payload,
    'received')
  returning id into v_event_id;

  for m in select * from jsonb_array_elements(coalesce(p_messages, '[]')) loop
    select ch.id, ch.workspace_id into v_channel
    from public.whatsapp_channels ch
    where ch.phone_number_id = m ->> 'phone_number_id' and ch.provider = p_provider;
    if not found then
      v_unroutable := array_append(v_unroutable, m ->> 'phone_number_id');
      continue;
    end if;
    v_routed := array_append(v_routed, m ->> 'phone_number_id');
    v_inbound := (m ->> 'direction') = 'inbound';
    v_ts := coalesce(to_timestamp((m ->> 'timestamp')::double precision), now());
    v_conversation_id := private.upsert_conversation(
      v_channel.workspace_id, v_channel.id, m ->> 'phone_number_id',
      nullif(m ->> 'phone', ''), nullif(m ->> 'bsuid', ''), nullif(m ->> 'profile_name', ''));

    insert into public.messages
      (workspace_id, conversation_id, wamid, direction, type, content, status, timestamp,
       processed_by_agent, sent_by_agent, context_wamid)
    values (
      v_channel.workspace_id, v_conversation_id, m ->> 'wamid',
      case when v_inbound then 'inbound' else 'outbound' end,
      coalesce(m ->> 'type', 'unknown'), coalesce(m -> 'content', '{}'::jsonb),
      case when v_inbound then null else 'sent' end,
      v_ts, not v_inbound, false, m ->> 'context_wamid')
    on conflict (wamid) do nothing
    returning id into v_message_id;

    if v_message_id is null then
      v_duplicates := v_duplicates + 1;
      continue;
    end if;
    v_stored := v_stored + 1;
    perform private.apply_orphan_statuses(m ->> 'wamid');
    perform private.link_existing_contact(v_conversation_id);

    update public.conversations c
       set last_message_at = greatest(c.last_message_at, v_ts),
           last_message_preview = case when c.last_message_at is null or v_ts >= c.last_message_at
                                       then private.message_preview(m -> 'content')
                                       else c.last_message_preview end,
           last_customer_message_at = case when v_inbound
                                           then greatest(c.last_customer_message_at, v_ts)
                                           else c.last_customer_message_at end,
           unread_count = c.unread_count + case when v_inbound then 1 else 0 end,
           is_read = case when v_inbound then false else c.is_read end
     where c.id = v_conversation_id;

    if v_inbound then
      v_new := v_new || jsonb_build_object(
        'message_id', v_message_id, 'wamid', m ->> 'wamid', 'type', m ->> 'type',
        'conversation_id', v_conversation_id, 'workspace_id', v_channel.workspace_id);
    end if;
  end loop;

  for s in select * from jsonb_array_elements(coalesce(p_statuses, '[]')) loop
    v_ts := coalesce(to_timestamp((s ->> 'timestamp')::double precision), now());
    if private.apply_message_status(
         s ->> 'wamid', s ->> 'status', v_ts, s ->> 'error_code', s ->> 'error_title') then
      v_applied := v_applied + 1;
    else
      insert into public.message_status_orphans
        (wamid, status, status_timestamp, error_code, error_message)
      values (s ->> 'wamid', s ->> 'status', v_ts, s ->> 'error_code', s ->> 'error_title');
      v_orphaned := v_orphaned + 1;
    end if;
  end loop;

  update public.whatsapp_webhook_events e
     set status = case when cardinality(v_unroutable) > 0 and cardinality(v_routed) = 0
                       then 'unroutable' else 'processed' end,
         processed_at = now(),
         workspace_id = (select ch.workspace_id from public.whatsapp_channels ch
                          where ch.phone_number_id = any(v_pnids) limit 1),
         error_message = case when cardinality(v_unroutable) > 0
                              then 'unknown phone_number_id: '
                                   || array_to_string(array(select distinct unnest(v_unroutable)), ', ')
                              end
   where e.id = v_event_id;

  return jsonb_build_object(
    'event_id', v_event_id,
    'new_inbound', v_new,
    'stored', v_stored,
    'duplicates', v_duplicates,
    'unroutable', to_jsonb(array(select distinct unnest(v_unroutable))),
    'statuses_applied', v_applied,
    'statuses_orphaned', v_orphaned);
end;
$$;
comment on function public.ingest_whatsapp_webhook(text, jsonb, jsonb, jsonb) is
  'Stores one WhatsApp webhook POST (raw event, conversations, messages, statuses) atomically and returns the new inbound messages. Service role only.';

revoke execute on function public.ingest_whatsapp_webhook(text, jsonb, jsonb, jsonb) from public, anon, authenticated;
grant execute on function public.ingest_whatsapp_webhook(text, jsonb, jsonb, jsonb) to service_role;
revoke execute on function private.message_status_rank(text) from public;
revoke execute on function private.apply_message_status(text, text, timestamptz, text, text) from public;
revoke execute on function private.apply_orphan_statuses(text) from public;
revoke execute on function private.upsert_conversation(uuid, uuid, text, text, text, text) from public;
revoke execute on function private.link_existing_contact(uuid) from public;
revoke execute on function private.message_preview(jsonb) from public;
grant execute on function private.message_status_rank(text), private.apply_message_status(text, text, timestamptz, text, text),
  private.apply_orphan_statuses(text), private.upsert_conversation(uuid, uuid, text, text, text, text),
  private.link_existing_contact(uuid), private.message_preview(jsonb) to service_role;

-- Readiness probe of the API: proves PostgREST (or its stand-in) and the database answer.
create or replace function public.bridge_ready()
returns boolean
language sql
stable
set search_path = ''
as $$ select true $$;
revoke execute on function public.bridge_ready() from public, anon, authenticated;
grant execute on function public.bridge_ready() to service_role;
