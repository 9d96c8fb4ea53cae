-- =============================================================================================
-- Realtime: the tables the frontend subscribes to (postgres_changes). REPLICA IDENTITY FULL so
-- filters on non-key columns (e.g. conversation_id=eq.…) also match updates and deletes.
-- Guarded so running it where a table is already published (or the publication covers all
-- tables) changes nothing.
-- =============================================================================================

do $$
declare
  v_table text;
begin
  foreach v_table in array array[
    'conversations', 'messages', 'tasks', 'teams', 'team_members', 'agent_sessions', 'contacts']
  loop
    execute format('alter table public.%I replica identity full', v_table);
    if exists (select 1 from pg_catalog.pg_publication p
                where p.pubname = 'supabase_realtime' and not p.puballtables)
       and not exists (select 1 from pg_catalog.pg_publication_tables pt
                        where pt.pubname = 'supabase_realtime'
                          and pt.schemaname = 'public' and pt.tablename = v_table) then
      execute format('alter publication supabase_realtime add table public.%I', v_table);
    end if;
  end loop;
end
$$;
