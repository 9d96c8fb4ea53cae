// Subscribes to `conversation:<id>` as the inbox does, on the public or the private channel of
// that name, as a signed-in user (their access token) or with the anon key alone ('-').
// Prints SUBSCRIBED, or `CHANNEL_ERROR <reason>` and exits 0 when the join is refused; then one
// JSON line per `typing` broadcast until stdin closes.
//
//   node typing_channel.mjs <supabase-url> <anon-key> <conversation-id> <public|private> <token|->
import { userClient, say } from './client.mjs'

const [url, key, conversationId, visibility, token] = process.argv.slice(2)

const supabase = userClient(url, key, token)
// As Supabase's guide for private channels asks: the join must carry the user's token, which
// realtime-js would otherwise only have after the first join went out with the anon key.
await supabase.realtime.setAuth()
const channel = supabase.channel(`conversation:${conversationId}`, {
  config: { private: visibility === 'private' },
})
channel
  .on('broadcast', { event: 'typing' }, (message) => say(message.payload))
  .subscribe((status, err) => {
    if (status === 'SUBSCRIBED') say('SUBSCRIBED')
    else if (status === 'CHANNEL_ERROR') {
      // realtime-js would retry the join forever; one refusal is the answer.
      say(`CHANNEL_ERROR ${err?.message ?? ''}`)
      process.exit(0)
    } else if (status !== 'CLOSED') {
      process.stderr.write(`subscribe failed: ${status} ${err ?? ''}\n`)
      process.exit(1)
    }
  })

process.stdin.on('end', async () => {
  await supabase.removeAllChannels()
  process.exit(0)
})
process.stdin.resume()
