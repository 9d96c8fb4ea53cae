-- =============================================================================================
-- Humans in the conversation. A human who writes to the customer (an echo of the WhatsApp
-- Business app, stored by the intake, or a member's reply from the inbox) pauses the bot for
-- that conversation by the workspace's policy (workspace_agent_config.human_takeover). A
-- member's reply goes out through the bridge: an outbox row the worker sends with the bot's,
-- under the same lock and in the same order, announced on the `bridge_outbox` notification
-- channel (the worker listens; its sweeper is the safety net).
-- =============================================================================================

-- Pause the bot of a conversation because a human wrote at p_at, by the workspace's policy:
-- off: nothing; pause: until p_at + human_takeover_minutes (a later pause is never shortened);
-- until_resumed: until a member resumes it. Returns the conversation's pause (null: none).
create or replace function private.pause_bot_for_human(p_conversation_id uuid, p_at timestamptz)
returns timestamptz
language plpgsql
set search_path = ''
as $$
declare
  v_until timestamptz;
begin
  select case coalesce(cfg.human_takeover, 'pause')
           when 'off' then null
           when 'until_resumed' then 'infinity'::timestamptz
           -- A message time from the future (a wrong clock) counts as now.
           else least(p_at, now()) + make_interval(mins => coalesce(cfg.human_takeover_minutes, 30))
         end
    into v_until
    from public.conversations c
    left join public.workspace_agent_config cfg on cfg.workspace_id = c.workspace_id
   where c.id = p_conversation_id;
  if v_until is null or v_until <= now() then
    return (select bot_paused_until from public.conversations where id = p_conversation_id);
  end if;
  update public.conversations c
     set bot_paused_until = greatest(coalesce(c.bot_paused_until, v_until), v_until)
   where c.id = p_conversation_id
  returning c.bot_paused_until into v_until;
  return v_until;
end;
$$;
comment on function private.pause_bot_for_human(uuid, timestamptz) is
  'Pauses the bot of a conversation by the workspace''s human_takeover policy because a human wrote at p_at; returns the pause. Called by the intake (echoes) and the send RPCs.';

-- The caller's conversation for a send: it exists and the caller is a member of its workspace.
-- Both failures look alike, so the answer says nothing about another tenant's conversations.
create or replace function private.member_conversation(p_conversation_id uuid)
returns uuid
language plpgsql
stable
set search_path = ''
as $$
declare
  v_workspace_id uuid;
begin
  if p_conversation_id is null then
    raise exception 'p_conversation_id is required' using errcode = '22004';
  end if;
  select c.workspace_id into v_workspace_id from public.conversations c
   where c.id = p_conversation_id;
  if v_workspace_id is null or (select auth.uid()) is null
     or not private.is_workspace_member(v_workspace_id) then
    raise exception 'not a member of this conversation''s workspace' using errcode = '42501',
      hint = 'sign in as a member of the workspace that holds the conversation';
  end if;
  return v_workspace_id;
end;
$$;

-- One member's outbox row, the bot paused, and the worker told. Returns the row's id.
create or replace function private.queue_human_message(
  p_conversation_id uuid, p_workspace_id uuid, p_kind text, p_type text, p_content jsonb,
  p_template_name text
) returns uuid
language plpgsql
set search_path = ''
as $$
declare
  v_id uuid;
begin
  insert into public.messages
    (workspace_id, conversation_id, direction, type, content, status, sent_by_agent,
     processed_by_agent, outbox_kind, outbox_position, delay_ms, timestamp, template_name,
     sent_by)
  values (p_workspace_id, p_conversation_id, 'outbound', p_type, p_content, 'pending', false,
          true, p_kind, 0, 0, now(), p_template_name, (select auth.uid()))
  returning id into v_id;
  perform private.pause_bot_for_human(p_conversation_id, now());
  -- Delivered at commit; the worker enqueues the conversation's job.
  perform pg_catalog.pg_notify('bridge_outbox', p_conversation_id::text);
  return v_id;
end;
$$;

-- A member's text to the customer, sent by the worker through the conversation's channel.
create or replace function private.send_message(p_conversation_id uuid, p_text text)
returns uuid
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_workspace_id uuid := private.member_conversation(p_conversation_id);
begin
  if p_text is null or char_length(p_text) not between 1 and 4096 or p_text ~ '^[[:space:]]*$' then
    raise exception 'p_text must be 1 to 4096 characters, not only spaces' using errcode = '22023';
  end if;
  return private.queue_human_message(
    p_conversation_id, v_workspace_id, 'human', 'text', jsonb_build_object('body', p_text), null);
end;
$$;
comment on function private.send_message(uuid, text) is
  'A member sends a text to the conversation''s customer: queued in the outbox (sent_by = the caller, sent_by_agent false), the bot paused by the workspace''s policy; returns the message id. Outside the 24-hour window the row fails with the reason: use send_template.';

-- A member's template message (an approved template of the WhatsApp Business Account), the
-- only kind WhatsApp delivers once the 24-hour customer service window is closed.
-- p_parameters: an array of strings (the body's parameters, in order) or of Cloud API
-- component objects ({"type": "body", "parameters": [...]}, ...), passed on as they are.
create or replace function private.send_template(
  p_conversation_id uuid, p_template_name text, p_language text, p_parameters jsonb
) returns uuid
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_workspace_id uuid := private.member_conversation(p_conversation_id);
  v_parameters jsonb := coalesce(p_parameters, '[]'::jsonb);
  v_components jsonb;
  v_texts text[];
begin
  if p_template_name is null or char_length(p_template_name) > 512
     or p_template_name !~ '^[a-z0-9_]+$' then
    raise exception 'p_template_name must be a template name: lowercase letters, digits and _'
      using errcode = '22023';
  end if;
  if p_language is null or p_language !~ '^[a-z]{2,3}(_[A-Za-z]{2,4})?$' then
    raise exception 'p_language must be a template language code such as es or en_US'
      using errcode = '22023';
  end if;
  if jsonb_typeof(v_parameters) <> 'array' or jsonb_array_length(v_parameters) > 100
     or length(v_parameters::text) > 32768 then
    raise exception 'p_parameters must be a JSON array (at most 100 items, 32 kB)'
      using errcode = '22023';
  end if;
  if jsonb_array_length(v_parameters) = 0 then
    v_components := '[]'::jsonb;
  elsif (select bool_and(jsonb_typeof(p) = 'string') from jsonb_array_elements(v_parameters) p) then
    v_components := jsonb_build_array(jsonb_build_object('type', 'body', 'parameters',
      (select jsonb_agg(jsonb_build_object('type', 'text', 'text', p #>> '{}') order by o)
         from jsonb_array_elements(v_parameters) with ordinality x(p, o))));
  elsif (select bool_and(jsonb_typeof(p) = 'object' and jsonb_typeof(p -> 'type') = 'string')
           from jsonb_array_elements(v_parameters) p) then
    v_components := v_parameters;
  else
    raise exception 'p_parameters must be all strings (body parameters) or all component objects with a "type"'
      using errcode = '22023';
  end if;
  select array_agg(p #>> '{}' order by o) into v_texts
    from jsonb_array_elements(v_parameters) with ordinality x(p, o)
   where jsonb_typeof(p) = 'string';
  return private.queue_human_message(
    p_conversation_id, v_workspace_id, 'template', 'template',
    jsonb_build_object(
      'body', left('[' || p_template_name || ']'
                   || coalesce(' ' || array_to_string(v_texts, ' · '), ''), 4096),
      'template', jsonb_build_object('name', p_template_name,
                                     'language', jsonb_build_object('code', p_language),
                                     'components', v_components)),
    p_template_name);
end;
$$;
comment on function private.send_template(uuid, text, text, jsonb) is
  'A member sends an approved WhatsApp template (name, language code, body parameters or Cloud API components) to the conversation''s customer, also when the 24-hour window is closed; queued like send_message; returns the message id.';

-- A member lifts a human takeover's pause: the bot answers the conversation again (the
-- conversation's own switch, agent_conversational, still applies).
create or replace function private.resume_bot(p_conversation_id uuid)
returns void
language plpgsql
security definer
set search_path = ''
as $$
begin
  perform private.member_conversation(p_conversation_id);
  update public.conversations set bot_paused_until = null
   where id = p_conversation_id and bot_paused_until is not null;
end;
$$;
comment on function private.resume_bot(uuid) is
  'A member ends the human takeover''s pause of a conversation, so the bot answers it again.';

-- The API's names for them: SECURITY INVOKER wrappers (definer code stays in `private`), as
-- public.assign_next_agent.
create or replace function public.send_message(p_conversation_id uuid, p_text text)
returns uuid
language sql
volatile
security invoker
set search_path = ''
as $$
  select private.send_message(p_conversation_id, p_text)
$$;
comment on function public.send_message(uuid, text) is
  'A member sends a text to the conversation''s customer through the bridge; returns the message id (private.send_message).';

create or replace function public.send_template(
  p_conversation_id uuid, p_template_name text, p_language text,
  p_parameters jsonb default '[]'::jsonb
) returns uuid
language sql
volatile
security invoker
set search_path = ''
as $$
  select private.send_template(p_conversation_id, p_template_name, p_language, p_parameters)
$$;
comment on function public.send_template(uuid, text, text, jsonb) is
  'A member sends an approved WhatsApp template to the conversation''s customer, also outside the 24-hour window; returns the message id (private.send_template).';

create or replace function public.resume_bot(p_conversation_id uuid)
returns void
language sql
volatile
security invoker
set search_path = ''
as $$
  select private.resume_bot(p_conversation_id)
$$;
comment on function public.resume_bot(uuid) is
  'A member ends the human takeover''s pause of a conversation (private.resume_bot).';

revoke execute on function private.pause_bot_for_human(uuid, timestamptz) from public;
revoke execute on function private.member_conversation(uuid) from public;
revoke execute on function private.queue_human_message(uuid, uuid, text, text, jsonb, text)
  from public;
grant execute on function private.pause_bot_for_human(uuid, timestamptz) to service_role;
revoke execute on function private.send_message(uuid, text),
  private.send_template(uuid, text, text, jsonb), private.resume_bot(uuid) from public, anon;
grant execute on function private.send_message(uuid, text),
  private.send_template(uuid, text, text, jsonb), private.resume_bot(uuid) to authenticated;
revoke execute on function public.send_message(uuid, text),
  public.send_template(uuid, text, text, jsonb), public.resume_bot(uuid) from public, anon;
grant execute on function public.send_message(uuid, text),
  public.send_template(uuid, text, text, jsonb), public.resume_bot(uuid) to authenticated;
