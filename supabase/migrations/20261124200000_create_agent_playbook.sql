-- =============================================================================================
-- The sales playbook: what the data-driven engine recognises, says and allows, as data.
--
-- Every table is keyed by agent_id (the engine id, e.g. somnio-sales-v1, as in
-- workspace_agent_config.conversational_agent_id) and workspace_id. A null workspace_id is the
-- global default every workspace inherits; a workspace's own rows replace the default for the
-- same key: an intent's rules, a template group (intent, language, visit type), the whole
-- transition table, and each settings column that is not null.
--
-- Members read their workspace's rows and the defaults; owners and admins edit their
-- workspace's rows; the defaults are written by migrations and seeds only. The bridge reloads
-- a workspace's playbook within about 30 seconds of an edit.
-- =============================================================================================

-- ---------------------------------------------------------------------------------------------
-- Intents: keyword/pattern rules.
-- ---------------------------------------------------------------------------------------------
create table public.agent_intents (
  id uuid primary key default gen_random_uuid(),
  agent_id text not null,
  workspace_id uuid references public.workspaces (id) on delete cascade,
  intent text not null check (intent ~ '^[a-z0-9_]+$'),
  kind text not null default 'info'
    check (kind in ('greeting', 'info', 'purchase', 'pack', 'confirm', 'decline', 'ack', 'handoff')),
  language text not null default 'es' check (language ~ '^([a-z]{2}|any)$'),
  keywords text[] not null default '{}',
  patterns text[] not null default '{}',
  modes text[] not null default '{}'
    check (modes <@ array['conversacion', 'collecting_data', 'ofrecer_promos', 'resumen',
                          'confirmado']::text[]),
  priority integer not null default 100,
  next_mode text
    check (next_mode in ('conversacion', 'collecting_data', 'ofrecer_promos', 'resumen',
                         'confirmado')),
  pack text check (pack in ('1x', '2x', '3x')),
  handoff boolean not null default false,
  enabled boolean not null default true,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  constraint agent_intents_pack_kind_check check ((kind = 'pack') = (pack is not null)),
  constraint agent_intents_matches_something_check
    check (not enabled or cardinality(keywords) + cardinality(patterns) > 0)
);
comment on table public.agent_intents is
  'Intent rules of a playbook: keywords and patterns that recognise what a customer asks. Several rows may share an intent (per language, per mode); a workspace''s rows for an intent replace the global ones.';
comment on column public.agent_intents.workspace_id is 'Null = the global default for every workspace.';
comment on column public.agent_intents.intent is
  'Intent name; templates with the same intent answer it (e.g. precio, captura_datos_si_compra, resumen_2x).';
comment on column public.agent_intents.kind is
  'ack: alone it gets no reply; pack: picks `pack`; the other kinds describe the intent for editors.';
comment on column public.agent_intents.language is
  'Language of the keywords (es, en, ...); the conversation is answered in the language its intents match. any = language-neutral (emoji, "ok").';
comment on column public.agent_intents.keywords is
  'Phrases matched as whole words, ignoring case and accents ("cuanto vale" matches "¿Cuánto VALE?").';
comment on column public.agent_intents.patterns is
  'Regular expressions matched by RE2 (linear time) against the lowercased, accent-free text (e.g. ^\s*(2|dos)\s*$): Python''s syntax without backreferences, lookaround or atomic groups, except (?<!\w) opening and (?!\w) closing a pattern. At most 20 per rule, 500 characters each; only the first 1024 characters of a message are read.';
comment on column public.agent_intents.modes is
  'Modes where this rule applies (e.g. "sí" confirms only in resumen); empty = every mode.';
comment on column public.agent_intents.priority is
  'When one message has several intents, higher priority is answered first (greetings first).';
comment on column public.agent_intents.next_mode is
  'Mode the conversation moves to, if agent_mode_transitions allows it; otherwise the customer is told what to do first.';
comment on column public.agent_intents.handoff is 'Hand the conversation to a person (asesor, queja, cancelar).';
comment on column public.agent_intents.enabled is
  'A disabled workspace row switches the global rules of its intent off for that workspace.';

create index agent_intents_agent_id_workspace_id_idx
  on public.agent_intents (agent_id, workspace_id);
create index agent_intents_workspace_id_idx
  on public.agent_intents (workspace_id) where workspace_id is not null;

create trigger agent_intents_set_updated_at
  before update on public.agent_intents
  for each row execute function private.set_updated_at();

-- Patterns are tenant-written and run in a worker every tenant shares: what RE2 cannot match in
-- linear time is refused here with a clear error (the engine skips it too, should one get in).
create or replace function private.check_agent_intent_patterns()
returns trigger
language plpgsql
set search_path = ''
as $$
declare
  v_pattern text;
  v_core text;
  v_index integer := 0;
  v_problem text;
  -- The text's start or a non-backslash, then pairs of backslashes: what follows is unescaped.
  c_unescaped constant text := '(^|[^\\])(\\\\)*';
begin
  if new.patterns is null then
    return new;  -- the column's not-null constraint answers
  end if;
  if cardinality(new.patterns) > 20 then
    raise exception 'agent_intents.patterns: at most 20 patterns per rule, not %',
      cardinality(new.patterns)
      using errcode = '23514';
  end if;
  foreach v_pattern in array new.patterns loop
    v_index := v_index + 1;
    v_core := coalesce(v_pattern, '');
    -- The whole-word guards the engine emulates: (?<!\w) first, (?!\w) last (not escaped).
    if left(v_core, 7) = '(?<!\w)' then
      v_core := substr(v_core, 8);
    end if;
    if right(v_core, 6) = '(?!\w)' and v_core !~ (c_unescaped || '\\\(\?!\\w\)$') then
      v_core := left(v_core, -6);
    end if;
    v_problem := case
      when v_pattern is null then 'is null'
      when btrim(v_pattern) = '' then 'is empty'
      when length(v_pattern) > 500 then 'is longer than 500 characters'
      when v_core ~ (c_unescaped || '\(\?(=|!|<=|<!)') then
        'uses lookaround ((?=, (?!, (?<=, (?<!), which RE2 cannot match; only (?<!\w) at the start and (?!\w) at the end are allowed'
      when v_core ~ (c_unescaped || '(\\[1-9]|\(\?P=)') then
        'uses a backreference (\1, (?P=name)), which RE2 cannot match'
      when v_core ~ (c_unescaped || '\(\?[>(]') then
        'uses an atomic group or a conditional ((?>, (?(), which RE2 cannot match'
      else null
    end;
    if v_problem is not null then
      raise exception 'agent_intents.patterns[%] %', v_index, v_problem
        using errcode = '23514',
              detail = format('pattern: %s', left(coalesce(v_pattern, ''), 200)),
              hint = 'Patterns are RE2 regular expressions: Python''s syntax without backreferences, lookaround or atomic groups.';
    end if;
  end loop;
  return new;
end;
$$;
comment on function private.check_agent_intent_patterns() is
  'BEFORE INSERT/UPDATE trigger on agent_intents: at most 20 patterns of at most 500 characters, none using what RE2 cannot match (backreferences, lookaround, atomic groups).';
revoke execute on function private.check_agent_intent_patterns() from public, anon, authenticated;

create trigger agent_intents_check_patterns
  before insert or update of patterns on public.agent_intents
  for each row execute function private.check_agent_intent_patterns();

-- ---------------------------------------------------------------------------------------------
-- Templates: the replies.
-- ---------------------------------------------------------------------------------------------
create table public.agent_templates (
  id uuid primary key default gen_random_uuid(),
  agent_id text not null,
  workspace_id uuid references public.workspaces (id) on delete cascade,
  intent text not null check (intent ~ '^[a-z0-9_]+$'),
  language text not null default 'es' check (language ~ '^[a-z]{2}$'),
  visit_type text not null default 'primera_vez' check (visit_type in ('primera_vez', 'siguientes')),
  orden integer not null default 0 check (orden >= 0),
  content text not null check (length(btrim(content)) > 0 and length(content) <= 4096),
  delay_ms integer not null default 0 check (delay_ms between 0 and 60000),
  priority text not null default 'core' check (priority in ('core', 'complementaria', 'opcional')),
  repeatable boolean not null default false,
  enabled boolean not null default true,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  constraint agent_templates_position_key
    unique nulls not distinct (agent_id, workspace_id, intent, language, visit_type, orden)
);
comment on table public.agent_templates is
  'Replies of a playbook, per intent, language and visit. A workspace''s rows for (intent, language, visit_type) replace the global ones.';
comment on column public.agent_templates.workspace_id is 'Null = the global default for every workspace.';
comment on column public.agent_templates.intent is
  'The intent answered; also the engine''s own: ofrecer_promos, datos_faltantes, datos_actualizados, fallback, repetido, pedir_texto, bloqueado[_<mode>[_<to mode>]].';
comment on column public.agent_templates.visit_type is
  'primera_vez: the first time the intent comes up in a session; siguientes: when asked again.';
comment on column public.agent_templates.orden is 'Position within the intent''s replies (0 first).';
comment on column public.agent_templates.content is
  'Text with variables: {{producto}}, {{precio}}, {{precio_1x}}, {{precio_2x}}, {{precio_3x}}, {{pack}}, {{cantidad}}, {{nombre}}, {{primer_nombre}}, {{telefono}}, {{direccion}}, {{barrio}}, {{ciudad}}, {{departamento}}, {{correo}}, {{faltantes}}, {{datos}}.';
comment on column public.agent_templates.delay_ms is
  'Pause before this message at response speed 1.0 (the workspace''s response_speed scales it).';
comment on column public.agent_templates.priority is
  'What a turn with too many replies drops first: opcional, then complementaria.';
comment on column public.agent_templates.enabled is
  'A disabled workspace row still replaces the global group it belongs to, so a workspace can silence a default reply.';
comment on column public.agent_templates.repeatable is
  'May be sent more than once per session (prompts and fallbacks); other templates go out at most once.';

create index agent_templates_workspace_id_idx
  on public.agent_templates (workspace_id) where workspace_id is not null;

create trigger agent_templates_set_updated_at
  before update on public.agent_templates
  for each row execute function private.set_updated_at();

-- ---------------------------------------------------------------------------------------------
-- Mode transitions: which moves between modes are allowed.
-- ---------------------------------------------------------------------------------------------
create table public.agent_mode_transitions (
  id uuid primary key default gen_random_uuid(),
  agent_id text not null,
  workspace_id uuid references public.workspaces (id) on delete cascade,
  from_mode text not null
    check (from_mode in ('conversacion', 'collecting_data', 'ofrecer_promos', 'resumen',
                         'confirmado')),
  to_mode text not null
    check (to_mode in ('conversacion', 'collecting_data', 'ofrecer_promos', 'resumen',
                       'confirmado')),
  created_at timestamptz not null default now(),
  constraint agent_mode_transitions_distinct_check check (from_mode <> to_mode),
  constraint agent_mode_transitions_key
    unique nulls not distinct (agent_id, workspace_id, from_mode, to_mode)
);
comment on table public.agent_mode_transitions is
  'Allowed moves between the engine''s modes. A workspace with any rows uses only its own set. Staying in a mode and handing off are always allowed.';
comment on column public.agent_mode_transitions.workspace_id is
  'Null = the global default for every workspace.';

create index agent_mode_transitions_workspace_id_idx
  on public.agent_mode_transitions (workspace_id) where workspace_id is not null;

-- ---------------------------------------------------------------------------------------------
-- Settings: product, prices, thresholds and policies. Null columns inherit the global row,
-- then the engine's built-in default.
-- ---------------------------------------------------------------------------------------------
create table public.agent_playbook_settings (
  id uuid primary key default gen_random_uuid(),
  agent_id text not null,
  workspace_id uuid references public.workspaces (id) on delete cascade,
  product_name text check (length(btrim(product_name)) > 0),
  currency_symbol text,
  price_1x numeric(12, 2) check (price_1x >= 0),
  price_2x numeric(12, 2) check (price_2x >= 0),
  price_3x numeric(12, 2) check (price_3x >= 0),
  default_language text check (default_language ~ '^[a-z]{2}$'),
  max_not_understood integer check (max_not_understood between 1 and 20),
  min_confidence integer check (min_confidence between 0 and 100),
  non_text_policy text check (non_text_policy in ('ask_text', 'handoff')),
  required_fields text[]
    check (required_fields <@ array['nombre', 'telefono', 'direccion', 'barrio', 'ciudad',
                                    'departamento', 'correo', 'indicaciones']::text[]),
  optional_fields text[]
    check (optional_fields <@ array['nombre', 'telefono', 'direccion', 'barrio', 'ciudad',
                                    'departamento', 'correo', 'indicaciones']::text[]),
  min_optional_fields integer check (min_optional_fields >= 0),
  max_replies_per_turn integer check (max_replies_per_turn between 1 and 20),
  llm_model text,
  llm_max_tokens integer check (llm_max_tokens between 1 and 64000),
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  constraint agent_playbook_settings_key unique nulls not distinct (agent_id, workspace_id)
);
comment on table public.agent_playbook_settings is
  'Product, prices and policies of a playbook. One row per agent globally (workspace_id null) and optionally one per workspace, whose non-null columns override the global ones.';
comment on column public.agent_playbook_settings.workspace_id is
  'Null = the global default for every workspace.';
comment on column public.agent_playbook_settings.max_not_understood is
  'Consecutive messages not understood before handing off (default 3).';
comment on column public.agent_playbook_settings.min_confidence is
  'Intent matches below this confidence (0-100) are ignored.';
comment on column public.agent_playbook_settings.non_text_policy is
  'Images, audio, stickers, ...: ask_text = ask the customer to write; handoff = hand off to a person.';
comment on column public.agent_playbook_settings.required_fields is
  'Customer data needed before offering packs.';
comment on column public.agent_playbook_settings.optional_fields is
  'Further data, of which min_optional_fields must also be given (a department inferred from the city counts).';
comment on column public.agent_playbook_settings.max_replies_per_turn is
  'Most messages one turn sends; opcional then complementaria templates are dropped first.';
comment on column public.agent_playbook_settings.llm_model is
  'Model for the LLM engine (claude-sales-v1); null = the bridge''s configured default.';

create index agent_playbook_settings_workspace_id_idx
  on public.agent_playbook_settings (workspace_id) where workspace_id is not null;

create trigger agent_playbook_settings_set_updated_at
  before update on public.agent_playbook_settings
  for each row execute function private.set_updated_at();

-- ---------------------------------------------------------------------------------------------
-- RLS: members read their rows and the global defaults; owners and admins write their
-- workspace's rows; global rows are not writable through the API; anon gets nothing.
-- ---------------------------------------------------------------------------------------------
alter table public.agent_intents enable row level security;
alter table public.agent_templates enable row level security;
alter table public.agent_mode_transitions enable row level security;
alter table public.agent_playbook_settings enable row level security;

revoke all on public.agent_intents, public.agent_templates, public.agent_mode_transitions,
  public.agent_playbook_settings from anon;

create policy agent_intents_authenticated_select on public.agent_intents
  for select to authenticated
  using (workspace_id is null or private.is_workspace_member(workspace_id));
create policy agent_intents_authenticated_insert_admin on public.agent_intents
  for insert to authenticated
  with check (workspace_id is not null and private.is_workspace_admin(workspace_id));
create policy agent_intents_authenticated_update_admin on public.agent_intents
  for update to authenticated
  using (workspace_id is not null and private.is_workspace_admin(workspace_id))
  with check (workspace_id is not null and private.is_workspace_admin(workspace_id));
create policy agent_intents_authenticated_delete_admin on public.agent_intents
  for delete to authenticated
  using (workspace_id is not null and private.is_workspace_admin(workspace_id));

create policy agent_templates_authenticated_select on public.agent_templates
  for select to authenticated
  using (workspace_id is null or private.is_workspace_member(workspace_id));
create policy agent_templates_authenticated_insert_admin on public.agent_templates
  for insert to authenticated
  with check (workspace_id is not null and private.is_workspace_admin(workspace_id));
create policy agent_templates_authenticated_update_admin on public.agent_templates
  for update to authenticated
  using (workspace_id is not null and private.is_workspace_admin(workspace_id))
  with check (workspace_id is not null and private.is_workspace_admin(workspace_id));
create policy agent_templates_authenticated_delete_admin on public.agent_templates
  for delete to authenticated
  using (workspace_id is not null and private.is_workspace_admin(workspace_id));

create policy agent_mode_transitions_authenticated_select on public.agent_mode_transitions
  for select to authenticated
  using (workspace_id is null or private.is_workspace_member(workspace_id));
create policy agent_mode_transitions_authenticated_insert_admin on public.agent_mode_transitions
  for insert to authenticated
  with check (workspace_id is not null and private.is_workspace_admin(workspace_id));
create policy agent_mode_transitions_authenticated_update_admin on public.agent_mode_transitions
  for update to authenticated
  using (workspace_id is not null and private.is_workspace_admin(workspace_id))
  with check (workspace_id is not null and private.is_workspace_admin(workspace_id));
create policy agent_mode_transitions_authenticated_delete_admin on public.agent_mode_transitions
  for delete to authenticated
  using (workspace_id is not null and private.is_workspace_admin(workspace_id));

create policy agent_playbook_settings_authenticated_select on public.agent_playbook_settings
  for select to authenticated
  using (workspace_id is null or private.is_workspace_member(workspace_id));
create policy agent_playbook_settings_authenticated_insert_admin on public.agent_playbook_settings
  for insert to authenticated
  with check (workspace_id is not null and private.is_workspace_admin(workspace_id));
create policy agent_playbook_settings_authenticated_update_admin on public.agent_playbook_settings
  for update to authenticated
  using (workspace_id is not null and private.is_workspace_admin(workspace_id))
  with check (workspace_id is not null and private.is_workspace_admin(workspace_id));
create policy agent_playbook_settings_authenticated_delete_admin on public.agent_playbook_settings
  for delete to authenticated
  using (workspace_id is not null and private.is_workspace_admin(workspace_id));
