-- =============================================================================================
-- The outbox: the engine's replies (and the handoff message) are messages rows written BEFORE
-- any send, with status pending; the sender moves each through sending to sent / failed /
-- unknown / skipped. `sent_by_agent` is set when the row is written, so it is exact by
-- construction. A member's reply from the inbox (public.send_message, public.send_template) is
-- an outbox row too, with its author in `sent_by`.
-- =============================================================================================

alter table public.messages
  add column agent_turn_id uuid references public.agent_turns (id) on delete set null,
  add column outbox_kind text check (outbox_kind in ('reply', 'handoff', 'human', 'template')),
  add column outbox_position int,
  add column delay_ms int,
  add column send_attempts int not null default 0,
  add column skip_reason text,
  add column sent_by uuid references auth.users (id) on delete set null;
comment on column public.messages.agent_turn_id is
  'The agent turn that produced this outbound message, or that consumed this inbound one.';
comment on column public.messages.outbox_kind is
  'reply: an engine reply; handoff: the handoff message; human: a member''s text (public.send_message); template: a member''s template message (public.send_template).';
comment on column public.messages.sent_by is
  'The member who wrote this outbound message from the inbox (auth.users id); null for the bot''s and the intake''s rows.';
comment on column public.messages.delay_ms is 'Pause before sending at response_speed 1.0.';
comment on column public.messages.skip_reason is
  'Why an outbox message was not sent (agent disabled, newer inbound message, window closed, ...).';

create index messages_outbox_idx on public.messages (conversation_id, outbox_position)
  where status in ('pending', 'sending');
create index messages_sent_by_idx on public.messages (sent_by) where sent_by is not null;
create index messages_agent_turn_id_idx on public.messages (agent_turn_id)
  where agent_turn_id is not null;
