// realtime-js tears its socket down when a heartbeat goes unanswered by the next tick. This
// heartbeats every 200 ms and exits 0 once three were answered ok (1 on timeout or error).
//
//   node heartbeats.mjs <supabase-url> <anon-key>
import { frontendClient, say, deadline } from './client.mjs'

const [url, key] = process.argv.slice(2)
deadline(10, 'three answered heartbeats')

let answered = 0
const supabase = frontendClient(url, key, {
  heartbeatIntervalMs: 200,
  heartbeatCallback: async (status) => {
    if (status === 'ok' && ++answered === 3) {
      say('HEARTBEATS OK')
      await supabase.removeAllChannels()
      process.exit(0)
    } else if (status === 'timeout' || status === 'error') {
      process.stderr.write(`heartbeat ${status}\n`)
      process.exit(1)
    }
  },
})
// A channel opens the socket; heartbeats start with it.
supabase.channel(`heartbeats:${Date.now()}`).subscribe()
