-- =============================================================================================
-- Customer identity. A WhatsApp customer is known by phone (wa_id), by business-scoped user id
-- (BSUID, the webhook's user_id, the only one a customer with a username may give), or both,
-- and they arrive in any order. One conversation and one contact per customer and workspace:
-- when a message shows that two of them are the same customer, the younger is merged into the
-- older (its rows moved, then deleted) and the merge recorded in public.conversation_merges.
-- A number change (`system` message user_changed_number / user_changed_user_id) links the new
-- identifiers to the customer's conversation and contact the same way.
-- Concurrent deliveries for one customer serialise on transaction advisory locks keyed by the
-- workspace and each identifier, taken in key order (never a deadlock between two resolutions).
-- =============================================================================================

create table public.conversation_merges (
  id uuid primary key default gen_random_uuid(),
  workspace_id uuid not null references public.workspaces (id) on delete cascade,
  kind text not null check (kind in ('conversation', 'contact')),
  reason text not null check (reason in ('same_customer', 'number_changed')),
  survivor_id uuid not null,
  merged_id uuid,
  identifiers jsonb not null default '{}'::jsonb,
  moved jsonb not null default '{}'::jsonb,
  created_at timestamptz not null default now()
);
comment on table public.conversation_merges is
  'Identity merges and number changes of the workspace''s customers: the conversation or contact that survived, the one merged into it (deleted; null for a number change that found no other), the identifiers of each side before, and how many rows were moved.';
comment on column public.conversation_merges.identifiers is
  'Phone and BSUID of the survivor and of the merged row before the merge, and the new ones of a number change.';
create index conversation_merges_workspace_id_created_at_idx
  on public.conversation_merges (workspace_id, created_at desc);
create index conversation_merges_survivor_id_idx on public.conversation_merges (survivor_id);
create index conversation_merges_merged_id_idx
  on public.conversation_merges (merged_id) where merged_id is not null;

alter table public.conversation_merges enable row level security;
revoke all on public.conversation_merges from anon, authenticated;
grant select on public.conversation_merges to authenticated;
grant all on public.conversation_merges to service_role;
create policy conversation_merges_authenticated_select on public.conversation_merges
  for select to authenticated
  using (private.is_workspace_member(workspace_id));

-- ---------------------------------------------------------------------------------------------
-- Lookups: the BSUID match first, then the phone's. Two lookups, each through its unique index
-- on (workspace_id, bsuid) or (workspace_id, phone): a single statement with an OR of both keys
-- would get one cached plan for any parameters, a scan of every row of the workspace. The agent
-- turn uses them too.
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

-- Transaction advisory locks on (workspace, identifier), in key order: every resolution of a
-- customer takes them first, so two deliveries naming the same customer run one after the other.
create or replace function private.lock_customer_identity(
  p_workspace_id uuid, p_phones text[], p_bsuids text[]
) returns void
language plpgsql
set search_path = ''
as $$
declare
  v_key bigint;
begin
  for v_key in
    select distinct k from (
      select hashtextextended(p_workspace_id::text || ':phone:' || x, 0) as k
        from unnest(p_phones) x where x is not null
      union
      select hashtextextended(p_workspace_id::text || ':bsuid:' || x, 0)
        from unnest(p_bsuids) x where x is not null) keys
     order by k
  loop
    perform pg_advisory_xact_lock(v_key);
  end loop;
end;
$$;

-- ---------------------------------------------------------------------------------------------
-- Merges. The survivor keeps its own values and takes the merged row's where it has none; the
-- merged row is deleted after its rows are moved. Returns what was moved.
-- ---------------------------------------------------------------------------------------------
create or replace function private.merge_contacts(
  p_survivor_id uuid, p_merged_id uuid, p_reason text
) returns void
language plpgsql
set search_path = ''
as $$
declare
  v_survivor public.contacts;
  v_merged public.contacts;
  v_conversations int;
  v_tasks int;
  v_sessions int;
begin
  if p_survivor_id = p_merged_id then
    return;
  end if;
  perform 1 from public.contacts ct where ct.id in (p_survivor_id, p_merged_id)
   order by ct.id for update;
  select * into v_survivor from public.contacts ct where ct.id = p_survivor_id;
  select * into v_merged from public.contacts ct where ct.id = p_merged_id;
  if v_survivor.id is null or v_merged.id is null then
    return;  -- merged meanwhile by another delivery of the same customer
  end if;
  if v_survivor.workspace_id <> v_merged.workspace_id then
    raise exception 'cannot merge contact % into %', p_merged_id, p_survivor_id
      using errcode = '22023';
  end if;
  update public.conversations c set contact_id = p_survivor_id where c.contact_id = p_merged_id;
  get diagnostics v_conversations = row_count;
  update public.tasks t set contact_id = p_survivor_id where t.contact_id = p_merged_id;
  get diagnostics v_tasks = row_count;
  update public.agent_sessions s set contact_id = p_survivor_id where s.contact_id = p_merged_id;
  get diagnostics v_sessions = row_count;
  delete from public.contacts ct where ct.id = p_merged_id;
  update public.contacts ct
     set phone = coalesce(ct.phone, v_merged.phone),
         bsuid = coalesce(ct.bsuid, v_merged.bsuid),
         email = coalesce(ct.email, v_merged.email),
         address = coalesce(ct.address, v_merged.address),
         city = coalesce(ct.city, v_merged.city),
         custom_fields = v_merged.custom_fields || ct.custom_fields
   where ct.id = p_survivor_id;
  insert into public.conversation_merges
    (workspace_id, kind, reason, survivor_id, merged_id, identifiers, moved)
  values (v_survivor.workspace_id, 'contact', p_reason, p_survivor_id, p_merged_id,
          jsonb_build_object(
            'survivor', jsonb_build_object('phone', v_survivor.phone, 'bsuid', v_survivor.bsuid),
            'merged', jsonb_build_object('phone', v_merged.phone, 'bsuid', v_merged.bsuid,
                                         'name', v_merged.name)),
          jsonb_build_object('conversations', v_conversations, 'tasks', v_tasks,
                             'agent_sessions', v_sessions));
end;
$$;

-- A worker running a turn of the merged conversation loses its fence (the fence row goes with
-- the conversation): its next fenced write raises WBF01 and nothing it wrote is lost, since
-- every row of that conversation is moved first. The merged conversation's unprocessed inbound
-- messages are returned so the caller can ring the survivor's doorbell for them.
create or replace function private.merge_conversations(
  p_survivor_id uuid, p_merged_id uuid, p_reason text
) returns jsonb
language plpgsql
set search_path = ''
as $$
declare
  v_survivor public.conversations;
  v_merged public.conversations;
  v_unprocessed jsonb;
  v_messages int;
  v_tasks int;
  v_sessions int;
  v_closed int;
begin
  if p_survivor_id = p_merged_id then
    return '[]'::jsonb;
  end if;
  perform 1 from public.conversations c where c.id in (p_survivor_id, p_merged_id)
   order by c.id for update;
  -- The merged conversation's fence row: a worker's fenced write in flight finishes first.
  perform 1 from public.conversation_turn_fences f where f.conversation_id = p_merged_id
     for update;
  select * into v_survivor from public.conversations c where c.id = p_survivor_id;
  select * into v_merged from public.conversations c where c.id = p_merged_id;
  if v_survivor.id is null or v_merged.id is null
     or v_survivor.workspace_id <> v_merged.workspace_id then
    raise exception 'cannot merge conversation % into %', p_merged_id, p_survivor_id
      using errcode = '22023';
  end if;

  select coalesce(jsonb_agg(jsonb_build_object(
           'message_id', m.id, 'wamid', m.wamid, 'type', m.type,
           'conversation_id', p_survivor_id, 'workspace_id', m.workspace_id)
           order by m.timestamp, m.received_seq), '[]'::jsonb)
    into v_unprocessed
    from public.messages m
   where m.conversation_id = p_merged_id and m.direction = 'inbound'
     and not m.processed_by_agent;
  update public.messages m set conversation_id = p_survivor_id
   where m.conversation_id = p_merged_id;
  get diagnostics v_messages = row_count;
  update public.tasks t set conversation_id = p_survivor_id
   where t.conversation_id = p_merged_id;
  get diagnostics v_tasks = row_count;
  -- One active session per conversation and agent: the merged one's is closed when the
  -- survivor has its own (its transcript stays, moved with it).
  update public.agent_sessions s
     set status = 'closed', closed_at = now(), close_reason = 'conversation_merged'
   where s.conversation_id = p_merged_id and s.status = 'active'
     and exists (select 1 from public.agent_sessions a
                  where a.conversation_id = p_survivor_id and a.agent_id = s.agent_id
                    and a.status = 'active');
  get diagnostics v_closed = row_count;
  update public.agent_sessions s set conversation_id = p_survivor_id
   where s.conversation_id = p_merged_id;
  get diagnostics v_sessions = row_count;

  delete from public.conversations c where c.id = p_merged_id;
  update public.conversations c
     set phone = coalesce(c.phone, v_merged.phone),
         bsuid = coalesce(c.bsuid, v_merged.bsuid),
         channel_id = coalesce(c.channel_id, v_merged.channel_id),
         profile_name = case when v_merged.last_message_at > c.last_message_at
                             then coalesce(v_merged.profile_name, c.profile_name)
                             else coalesce(c.profile_name, v_merged.profile_name) end,
         contact_id = coalesce(c.contact_id, v_merged.contact_id),
         assigned_to = coalesce(c.assigned_to, v_merged.assigned_to),
         team_id = coalesce(c.team_id, v_merged.team_id),
         agent_conversational = coalesce(c.agent_conversational, v_merged.agent_conversational),
         agent_crm = coalesce(c.agent_crm, v_merged.agent_crm),
         bot_paused_until = greatest(c.bot_paused_until, v_merged.bot_paused_until),
         status = case when 'active' in (c.status, v_merged.status) then 'active'
                       else c.status end,
         is_read = c.is_read and v_merged.is_read,
         unread_count = c.unread_count + v_merged.unread_count,
         last_customer_message_at = greatest(c.last_customer_message_at,
                                             v_merged.last_customer_message_at),
         last_message_preview = case when v_merged.last_message_at > c.last_message_at
                                       or c.last_message_at is null
                                     then coalesce(v_merged.last_message_preview,
                                                   c.last_message_preview)
                                     else c.last_message_preview end,
         last_message_at = greatest(c.last_message_at, v_merged.last_message_at)
   where c.id = p_survivor_id;

  insert into public.conversation_merges
    (workspace_id, kind, reason, survivor_id, merged_id, identifiers, moved)
  values (v_survivor.workspace_id, 'conversation', p_reason, p_survivor_id, p_merged_id,
          jsonb_build_object(
            'survivor', jsonb_build_object('phone', v_survivor.phone, 'bsuid', v_survivor.bsuid),
            'merged', jsonb_build_object('phone', v_merged.phone, 'bsuid', v_merged.bsuid)),
          jsonb_build_object('messages', v_messages, 'tasks', v_tasks,
                             'agent_sessions', v_sessions, 'sessions_closed', v_closed));

  if v_survivor.contact_id is not null and v_merged.contact_id is not null
     and v_survivor.contact_id <> v_merged.contact_id then
    perform private.merge_contacts(
      private.older_contact(v_survivor.contact_id, v_merged.contact_id),
      case when private.older_contact(v_survivor.contact_id, v_merged.contact_id)
                = v_survivor.contact_id
           then v_merged.contact_id else v_survivor.contact_id end,
      p_reason);
  end if;
  return v_unprocessed;
end;
$$;

-- The older of two rows survives a merge (then the smaller id): the same answer whichever
-- delivery finds them.
create or replace function private.older_conversation(p_a uuid, p_b uuid)
returns uuid
language sql
stable
set search_path = ''
as $$
  select c.id from public.conversations c where c.id in (p_a, p_b)
   order by c.created_at, c.id limit 1
$$;

create or replace function private.older_contact(p_a uuid, p_b uuid)
returns uuid
language sql
stable
set search_path = ''
as $$
  select ct.id from public.contacts ct where ct.id in (p_a, p_b)
   order by ct.created_at, ct.id limit 1
$$;

-- ---------------------------------------------------------------------------------------------
-- The contact with this identity, the phone's and the BSUID's merged when they are two, the
-- identifiers it lacks filled in; p_linked (the contact a conversation already has) is merged
-- with them too. Null when there is none (the agent turn creates it). The caller serialises
-- it: the intake holds the customer's conversation row (a lock taken after the identity locks,
-- so a conversation found by one identifier never waits for the locks of its others).
-- A contact a concurrent merge deleted meanwhile is skipped, never an error.
-- ---------------------------------------------------------------------------------------------
create or replace function private.resolve_contact(
  p_workspace_id uuid, p_phone text, p_bsuid text, p_linked uuid default null
) returns uuid
language plpgsql
set search_path = ''
as $$
declare
  v_by_bsuid uuid;
  v_by_phone uuid;
  v_id uuid;
begin
  if p_bsuid is not null then
    select ct.id into v_by_bsuid from public.contacts ct
     where ct.workspace_id = p_workspace_id and ct.bsuid = p_bsuid;
  end if;
  if p_phone is not null then
    select ct.id into v_by_phone from public.contacts ct
     where ct.workspace_id = p_workspace_id and ct.phone = p_phone;
  end if;
  if v_by_bsuid is not null and v_by_phone is not null and v_by_bsuid <> v_by_phone then
    v_id := private.older_contact(v_by_bsuid, v_by_phone);
    perform private.merge_contacts(
      v_id, case when v_id = v_by_bsuid then v_by_phone else v_by_bsuid end, 'same_customer');
  else
    v_id := coalesce(v_by_bsuid, v_by_phone);
  end if;
  if p_linked is not null and v_id is distinct from p_linked then
    if v_id is null then
      v_id := p_linked;
    else
      perform private.merge_contacts(private.older_contact(v_id, p_linked),
        case when private.older_contact(v_id, p_linked) = v_id then p_linked else v_id end,
        'same_customer');
      v_id := private.older_contact(v_id, p_linked);
    end if;
  end if;
  if v_id is not null then
    begin
      update public.contacts ct
         set phone = coalesce(ct.phone, p_phone), bsuid = coalesce(ct.bsuid, p_bsuid)
       where ct.id = v_id
         and (ct.phone is null and p_phone is not null or ct.bsuid is null and p_bsuid is not null);
    exception when unique_violation then
      null;  -- a contact created meanwhile by the agent turn holds it: the next message merges
    end;
  end if;
  return v_id;
end;
$$;

-- ---------------------------------------------------------------------------------------------
-- The conversation of the customer a message names, created when there is none; the phone's
-- and the BSUID's merged when they are two; the identifiers it lacks filled in. A known
-- identifier is never overwritten here (a number change does that). `requeue` lists the
-- unprocessed inbound messages a merge moved into it, `merged` the conversations it absorbed.
-- ---------------------------------------------------------------------------------------------
create or replace function private.resolve_conversation(
  p_workspace_id uuid, p_channel_id uuid, p_phone_number_id text,
  p_phone text, p_bsuid text, p_profile_name text,
  out conversation_id uuid, out merged uuid[], out requeue jsonb
)
language plpgsql
set search_path = ''
as $$
declare
  v_by_bsuid uuid;
  v_by_phone uuid;
  v_loser uuid;
begin
  merged := '{}'::uuid[];
  requeue := '[]'::jsonb;
  if p_phone is null and p_bsuid is null then
    raise exception 'message has neither a phone (wa_id) nor a BSUID (user_id)'
      using errcode = '22023';
  end if;
  perform private.lock_customer_identity(p_workspace_id, array[p_phone], array[p_bsuid]);
  for attempt in 1..3 loop
    v_by_bsuid := null;
    v_by_phone := null;
    if p_bsuid is not null then
      select c.id into v_by_bsuid from public.conversations c
       where c.workspace_id = p_workspace_id and c.bsuid = p_bsuid;
    end if;
    if p_phone is not null then
      select c.id into v_by_phone from public.conversations c
       where c.workspace_id = p_workspace_id and c.phone = p_phone;
    end if;
    if v_by_bsuid is not null and v_by_phone is not null and v_by_bsuid <> v_by_phone then
      conversation_id := private.older_conversation(v_by_bsuid, v_by_phone);
      v_loser := case when conversation_id = v_by_bsuid then v_by_phone else v_by_bsuid end;
      requeue := requeue || private.merge_conversations(conversation_id, v_loser, 'same_customer');
      merged := merged || v_loser;
    else
      conversation_id := coalesce(v_by_bsuid, v_by_phone);
    end if;
    begin
      if conversation_id is null then
        insert into public.conversations
          (workspace_id, channel_id, phone_number_id, phone, bsuid, profile_name)
        values (p_workspace_id, p_channel_id, p_phone_number_id, p_phone, p_bsuid, p_profile_name)
        returning id into conversation_id;
      else
        update public.conversations c
           set phone = coalesce(c.phone, p_phone), bsuid = coalesce(c.bsuid, p_bsuid)
         where c.id = conversation_id
           and (c.phone is null and p_phone is not null
                or c.bsuid is null and p_bsuid is not null);
      end if;
      return;
    exception when unique_violation then
      -- A writer that does not take the identity locks got there first: look again.
      conversation_id := null;
    end;
  end loop;
  raise exception 'could not resolve the conversation for % / %', p_phone, p_bsuid
    using errcode = '40001';
end;
$$;

-- ---------------------------------------------------------------------------------------------
-- A number change: the customer of p_conversation_id now has p_new_phone and/or p_new_bsuid.
-- A conversation (and contact) already holding a new identifier is the same customer and is
-- merged (the older survives); the survivor then carries the new identifiers, the old ones
-- kept only in the merge record (a number given up may be someone else's later).
-- ---------------------------------------------------------------------------------------------
create or replace function private.link_new_identity(
  p_conversation_id uuid, p_new_phone text, p_new_bsuid text,
  out conversation_id uuid, out merged uuid[], out requeue jsonb
)
language plpgsql
set search_path = ''
as $$
declare
  v_conv public.conversations;
  v_other uuid;
  v_loser uuid;
  v_contact uuid;
  v_other_contact uuid;
  v_previous jsonb;
begin
  merged := '{}'::uuid[];
  requeue := '[]'::jsonb;
  conversation_id := p_conversation_id;
  select * into v_conv from public.conversations c where c.id = p_conversation_id;
  if v_conv.id is null or (p_new_phone is null and p_new_bsuid is null) then
    return;
  end if;
  v_previous := jsonb_build_object('phone', v_conv.phone, 'bsuid', v_conv.bsuid);
  perform private.lock_customer_identity(v_conv.workspace_id,
    array[v_conv.phone, p_new_phone], array[v_conv.bsuid, p_new_bsuid]);
  for v_other in
    select c.id from public.conversations c
     where c.workspace_id = v_conv.workspace_id and c.id <> p_conversation_id
       and (c.phone = p_new_phone or c.bsuid = p_new_bsuid)
     order by c.created_at, c.id
  loop
    v_loser := case when private.older_conversation(conversation_id, v_other) = conversation_id
                    then v_other else conversation_id end;
    conversation_id := case when v_loser = v_other then conversation_id else v_other end;
    requeue := requeue || private.merge_conversations(conversation_id, v_loser, 'number_changed');
    merged := merged || v_loser;
  end loop;
  select * into v_conv from public.conversations c where c.id = conversation_id;
  update public.conversations c
     set phone = coalesce(p_new_phone, c.phone), bsuid = coalesce(p_new_bsuid, c.bsuid)
   where c.id = conversation_id;
  insert into public.conversation_merges
    (workspace_id, kind, reason, survivor_id, merged_id, identifiers)
  values (v_conv.workspace_id, 'conversation', 'number_changed', conversation_id, null,
          jsonb_build_object(
            'previous', v_previous,
            'new', jsonb_build_object('phone', p_new_phone, 'bsuid', p_new_bsuid)));

  -- The contact: the conversation's, else the one with the old identity; merged with the one
  -- holding a new identifier, then given the new identifiers.
  v_contact := coalesce(v_conv.contact_id,
                        private.find_contact(v_conv.workspace_id, v_conv.bsuid, v_conv.phone));
  for v_other_contact in
    select ct.id from public.contacts ct
     where ct.workspace_id = v_conv.workspace_id
       and (ct.phone = p_new_phone or ct.bsuid = p_new_bsuid)
       and ct.id is distinct from v_contact
     order by ct.created_at, ct.id
  loop
    if v_contact is null then
      v_contact := v_other_contact;
    else
      v_loser := case when private.older_contact(v_contact, v_other_contact) = v_contact
                      then v_other_contact else v_contact end;
      v_contact := case when v_loser = v_contact then v_other_contact else v_contact end;
      perform private.merge_contacts(v_contact, v_loser, 'number_changed');
    end if;
  end loop;
  if v_contact is not null then
    update public.contacts ct
       set phone = coalesce(p_new_phone, ct.phone), bsuid = coalesce(p_new_bsuid, ct.bsuid)
     where ct.id = v_contact;
    update public.conversations c set contact_id = v_contact
     where c.id = conversation_id and c.contact_id is distinct from v_contact;
  end if;
end;
$$;

comment on function private.resolve_conversation(uuid, uuid, text, text, text, text) is
  'The conversation of the customer named by phone and/or BSUID: created when missing, two merged when they are the same customer. Service role only.';
comment on function private.resolve_contact(uuid, text, text, uuid) is
  'The contact named by phone and/or BSUID, two merged when they are the same customer; null when none. Service role only.';
comment on function private.link_new_identity(uuid, text, text) is
  'Links a customer''s new phone and/or BSUID (a number change) to their conversation and contact, merging any holding them. Service role only.';

revoke execute on function private.find_conversation(uuid, text, text) from public;
revoke execute on function private.find_contact(uuid, text, text) from public;
revoke execute on function private.lock_customer_identity(uuid, text[], text[]) from public;
revoke execute on function private.merge_contacts(uuid, uuid, text) from public;
revoke execute on function private.merge_conversations(uuid, uuid, text) from public;
revoke execute on function private.older_conversation(uuid, uuid) from public;
revoke execute on function private.older_contact(uuid, uuid) from public;
revoke execute on function private.resolve_contact(uuid, text, text, uuid) from public;
revoke execute on function private.resolve_conversation(uuid, uuid, text, text, text, text)
  from public;
revoke execute on function private.link_new_identity(uuid, text, text) from public;
grant execute on function private.find_conversation(uuid, text, text),
  private.find_contact(uuid, text, text),
  private.lock_customer_identity(uuid, text[], text[]),
  private.merge_contacts(uuid, uuid, text),
  private.merge_conversations(uuid, uuid, text),
  private.older_conversation(uuid, uuid),
  private.older_contact(uuid, uuid),
  private.resolve_contact(uuid, text, text, uuid),
  private.resolve_conversation(uuid, uuid, text, text, text, text),
  private.link_new_identity(uuid, text, text) to service_role;
