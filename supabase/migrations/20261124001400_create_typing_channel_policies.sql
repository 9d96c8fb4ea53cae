-- =============================================================================================
-- Who may use the private Realtime channel `conversation:<id>`, where the worker broadcasts the
-- inbox's typing indicator for workspaces that chose it (workspace_agent_config
-- .typing_channel_private). Realtime authorizes private channels with RLS on realtime.messages:
-- joining needs a row of the topic to be selectable, sending needs one to be insertable, with
-- realtime.topic() and the caller's JWT set. Supabase creates realtime.messages with RLS on
-- (supabase/bootstrap.sql does the same on plain Postgres).
--
-- - Members of the conversation's workspace may receive (join).
-- - Nobody but the service role (which bypasses RLS) may send: no insert policy grants it, and
--   the restrictive policies below keep any broader Realtime policy a project adds for its own
--   channels (e.g. "authenticated may read and send everywhere") away from conversation topics.
--
-- Public channels of the same name are not affected: Realtime checks no policy for them.
-- Topics are matched on the row's `topic`, which Realtime sets to realtime.topic() in its checks.
-- =============================================================================================

create policy messages_authenticated_select_conversation_typing on realtime.messages
  as permissive
  for select to authenticated
  using (
    extension = 'broadcast'
    and exists (
      select 1 from public.conversations c
       where c.id = case
                      when topic ~ '^conversation:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$'
                      then substr(topic, 14)::uuid
                    end
         and private.is_workspace_member(c.workspace_id)));

-- Restrictive policies narrow every permissive one, whoever added it. anon is never a member.
create policy messages_authenticated_select_conversation_members_only on realtime.messages
  as restrictive
  for select to authenticated
  using (
    topic !~ '^conversation:'
    or exists (
      select 1 from public.conversations c
       where c.id = case
                      when topic ~ '^conversation:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$'
                      then substr(topic, 14)::uuid
                    end
         and private.is_workspace_member(c.workspace_id)));

create policy messages_anon_select_no_conversation_topics on realtime.messages
  as restrictive
  for select to anon
  using (topic !~ '^conversation:');

create policy messages_authenticated_insert_no_conversation_topics on realtime.messages
  as restrictive
  for insert to authenticated
  with check (topic !~ '^conversation:');

create policy messages_anon_insert_no_conversation_topics on realtime.messages
  as restrictive
  for insert to anon
  with check (topic !~ '^conversation:');
