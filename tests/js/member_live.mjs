// A member follows one conversation as the inbox does, signed in with a password: reads its
// messages, then listens to new ones (Postgres Changes) and to the bot's typing on the private
// channel `conversation:<id>`. Prints one JSON line per step and per event until stdin closes:
//
//   node member_live.mjs <supabase-url> <anon-key> <email> <password> <conversation-id>
//
// {"step": "sign_in"|"messages", "data", "error"}, {"step": "joined", "changes", "typing"}
// (each channel's status: SUBSCRIBED, or CHANNEL_ERROR when the join is refused), then
// {"event": "insert", "id"} and {"event": "typing", "payload"}.
import { frontendClient, say, deadline } from './client.mjs'

const [url, key, email, password, conversationId] = process.argv.slice(2)
const joining = deadline(20, 'signing in and joining')
const supabase = frontendClient(url, key)

const signIn = await supabase.auth.signInWithPassword({ email, password })
say({ step: 'sign_in', data: signIn.data.user?.email ?? null, error: signIn.error?.message ?? null })
if (signIn.error) process.exit(0)

const messages = await supabase
  .from('messages')
  .select('wamid')
  .eq('conversation_id', conversationId)
  .order('timestamp', { ascending: true })
say({
  step: 'messages',
  data: messages.data && messages.data.map((m) => m.wamid),
  error: messages.error?.message ?? null,
})

// Private channels check the user's token at the join.
await supabase.realtime.setAuth()
const joined = {}
function settled(name, status) {
  if (name in joined) return
  joined[name] = status
  if (Object.keys(joined).length === 2) {
    clearTimeout(joining)
    say({ step: 'joined', ...joined })
  }
}
function onStatus(name) {
  return (status) => {
    if (status === 'SUBSCRIBED' || status === 'CHANNEL_ERROR') settled(name, status)
  }
}

const changes = supabase.channel(`inbox:${conversationId}`).on(
  'postgres_changes',
  { event: 'INSERT', schema: 'public', table: 'messages', filter: `conversation_id=eq.${conversationId}` },
  ({ new: row }) => say({ event: 'insert', id: row.id }),
)
changes.subscribe(onStatus('changes'))

const typing = supabase
  .channel(`conversation:${conversationId}`, { config: { private: true } })
  .on('broadcast', { event: 'typing' }, ({ payload }) => say({ event: 'typing', payload }))
typing.subscribe((status, err) => {
  onStatus('typing')(status, err)
  // realtime-js would retry a refused join forever; one refusal is the answer.
  if (status === 'CHANNEL_ERROR') supabase.removeChannel(typing)
})

process.stdin.resume()
process.stdin.on('end', async () => {
  await supabase.removeAllChannels()
  process.exit(0)
})
