// Sends one broadcast the way the frontend does and prints the send result ("ok"), exit 0.
//
//   node broadcast_sender.mjs <supabase-url> <anon-key> <topic> <event> <payload-json> [socket|rest]
//
// socket (default): joins with ack on, then `channel.send` goes over the socket, which
//   supabase-js encodes as a binary user-broadcast push (vsn 2.0.0, kind 3).
// rest: sends without joining; realtime-js then falls back to the batch REST endpoint
//   (`POST /realtime/v1/api/broadcast?apikey=…&vsn=2.0.0`).
import { frontendClient, say, deadline } from './client.mjs'

const [url, key, topic, event, payloadJson, mode = 'socket'] = process.argv.slice(2)
deadline(15, 'the broadcast to be sent')

// In socket mode a REST fallback would hide a broken socket path, so it is a failure.
const warn = console.warn
console.warn = (...args) => {
  if (mode === 'socket') {
    warn(...args)
    if (String(args[0]).includes('falling back to REST')) process.exit(1)
  }
}

const supabase = frontendClient(url, key)
const payload = JSON.parse(payloadJson)

async function send(channel) {
  const result = await channel.send({ type: 'broadcast', event, payload })
  say(result)
  await supabase.removeAllChannels()
  process.exit(result === 'ok' ? 0 : 1)
}

if (mode === 'rest') {
  await send(supabase.channel(topic))
} else {
  const channel = supabase.channel(topic, { config: { broadcast: { ack: true } } })
  channel.subscribe(async (status, err) => {
    if (status === 'SUBSCRIBED') await send(channel)
    else if (status !== 'CLOSED') {
      process.stderr.write(`subscribe failed: ${status} ${err ?? ''}\n`)
      process.exit(1)
    }
  })
}
