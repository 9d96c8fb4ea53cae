-- =============================================================================================
-- A turn's first round trip: the lock (when there is work), the snapshot and, when the snapshot
-- shows a turn to run now, the contact and session. It replaces three calls (lock_conversation,
-- turn_snapshot, prepare_turn), each a round trip and a statement of its own.
-- =============================================================================================

-- Null when there is nothing to do or another session holds the lock, as lock_conversation.
-- Otherwise {epoch, snapshot, prepared}: `snapshot` is turn_snapshot's (null if the conversation
-- is gone); `prepared` is prepare_turn's for the workspace's agent when p_prepare is set and the
-- turn can start at once: agent on, messages waiting, no outbox left to resume, the reply
-- window passed. Otherwise it is null and the caller prepares when it gets there.
-- Each statement of this volatile function takes a new snapshot, so the turn's snapshot sees
-- every message committed before the lock was taken, as the separate calls did.
create or replace function private.begin_turn(
  p_conversation_id uuid, p_holder text, p_prepare boolean
) returns jsonb
language plpgsql
volatile
set search_path = ''
as $$
declare
  v_epoch bigint;
  v_snapshot jsonb;
  v_agent_id text;
  v_prepared jsonb;
begin
  v_epoch := private.lock_conversation(p_conversation_id, p_holder);
  if v_epoch is null then
    return null;
  end if;
  v_snapshot := private.turn_snapshot(p_conversation_id);
  v_agent_id := nullif(v_snapshot #>> '{config,conversational_agent_id}', '');
  if p_prepare and v_agent_id is not null
     and (v_snapshot ->> 'enabled')::boolean
     and jsonb_array_length(v_snapshot -> 'messages') > 0
     and (v_snapshot ->> 'outbox_pending')::int = 0
     and (v_snapshot ->> 'outbox_sending')::int = 0
     and coalesce((v_snapshot #>> '{config,reply_window_ms}')::numeric, 0)
         <= coalesce((v_snapshot ->> 'newest_age_ms')::numeric, 0) then
    v_prepared := private.prepare_turn(p_conversation_id, v_epoch, v_agent_id)
                  || jsonb_build_object('agent_id', v_agent_id);
  end if;
  return jsonb_build_object('epoch', v_epoch, 'snapshot', v_snapshot, 'prepared', v_prepared);
end;
$$;

revoke execute on function private.begin_turn(uuid, text, boolean) from public;
grant execute on function private.begin_turn(uuid, text, boolean) to service_role;
