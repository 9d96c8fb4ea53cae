// Tries each way supabase-js has of sending a `typing` broadcast on `conversation:<id>`, as a
// signed-in user (their access token) or with the anon key alone ('-'), and prints one JSON line
// per attempt, {"via": …, "result": …}, then exits 0:
//
//   private-http    channel.httpSend on the private channel (REST, ?private=true)
//   private-rest    channel.send on the private channel without joining it (the batch REST
//                   fallback, with "private": true)
//   private-socket  join the private channel, then channel.send over the socket with ack on
//                   ("join refused: <reason>" when the join is)
//   public-socket   the same on the public channel of that name
//
//   node typing_spoof.mjs <supabase-url> <anon-key> <conversation-id> <token|->
import { userClient, say, deadline } from './client.mjs'

const [url, key, conversationId, token] = process.argv.slice(2)
deadline(30, 'the sending attempts')
console.warn = () => {} // realtime-js warns about the REST fallback, which is one of the attempts

// A dropped push is never acked: a short timeout keeps that answer quick.
const supabase = userClient(url, key, token, { timeout: 2000 })
await supabase.realtime.setAuth() // see typing_channel.mjs
const topic = `conversation:${conversationId}`
const payload = { isTyping: true, source: 'spoof', expiresAt: new Date(Date.now() + 60000) }

function join(channel) {
  return new Promise((resolve) => {
    channel.subscribe((status, err) => {
      if (status === 'SUBSCRIBED') resolve(null)
      else if (status === 'CHANNEL_ERROR' || status === 'TIMED_OUT') {
        resolve(`join refused: ${err?.message ?? status}`)
      }
    })
  })
}

async function attempt(via, isPrivate, send) {
  const channel = supabase.channel(topic, {
    config: { private: isPrivate, broadcast: { ack: true } },
  })
  let result
  try {
    result = await send(channel)
  } catch (err) {
    result = `rejected: ${err?.message ?? err}`
  }
  say({ via, result })
  // Channels are kept per topic: the next attempt needs a fresh one.
  await supabase.removeChannel(channel)
}

const overSocket = async (channel) => {
  const refused = await join(channel)
  return refused ?? (await channel.send({ type: 'broadcast', event: 'typing', payload }))
}

await attempt('private-http', true, async (channel) => {
  await channel.httpSend('typing', payload)
  return 'ok'
})
await attempt('private-rest', true, (channel) =>
  channel.send({ type: 'broadcast', event: 'typing', payload }),
)
await attempt('private-socket', true, overSocket)
await attempt('public-socket', false, overSocket)
process.exit(0)
