// Subscribes, as a signed-in CRM user, to Postgres Changes of one conversation's messages, the
// way the inbox does: INSERT and UPDATE on public.messages filtered by conversation_id. Prints
// SUBSCRIBED once joined, then each change's payload (what the callback receives) as one JSON
// line, with `binding` saying which listener got it. Exits 0 when stdin closes.
//
//   node postgres_changes_subscriber.mjs <supabase-url> <anon-key> <access-token> <conversation-id>
import { userClient, say, deadline } from './client.mjs'

const [url, key, token, conversationId] = process.argv.slice(2)
const subscribing = deadline(15, 'the subscription')

const supabase = userClient(url, key, token)
// The join must carry the user's token (see typing_channel.mjs): joined with the anon key alone,
// Realtime would check RLS as anon and deliver nothing.
await supabase.realtime.setAuth()
const filter = `conversation_id=eq.${conversationId}`
const channel = supabase.channel(`inbox:${conversationId}`)
for (const event of ['INSERT', 'UPDATE']) {
  channel.on('postgres_changes', { event, schema: 'public', table: 'messages', filter }, (payload) =>
    say({ binding: event, ...payload }),
  )
}
channel
  .on('system', {}, (message) => {
    if (message.extension === 'postgres_changes' && message.status !== 'ok') {
      process.stderr.write(`postgres_changes refused: ${message.message}\n`)
      process.exit(1)
    }
  })
  .subscribe((status, err) => {
    if (status === 'SUBSCRIBED') {
      clearTimeout(subscribing)
      say('SUBSCRIBED')
    } else if (status !== 'CLOSED') {
      process.stderr.write(`subscribe failed: ${status} ${err ?? ''}\n`)
      process.exit(1)
    }
  })

process.stdin.resume()
process.stdin.on('end', async () => {
  await supabase.removeAllChannels()
  process.exit(0)
})
