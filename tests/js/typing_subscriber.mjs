// Subscribes to `conversation:<id>` as the CRM frontend does, prints SUBSCRIBED once joined,
// then prints the first `typing` broadcast payload as JSON and exits 0 (1 on timeout/error).
//
//   node typing_subscriber.mjs <supabase-url> <anon-key> <conversation-id> [timeout-seconds]
import { frontendClient, say, deadline } from './client.mjs'

const [url, key, conversationId, timeoutSeconds = '15'] = process.argv.slice(2)
deadline(Number(timeoutSeconds), 'a typing broadcast')

const supabase = frontendClient(url, key)
const channel = supabase.channel(`conversation:${conversationId}`)
channel
  .on('broadcast', { event: 'typing' }, async (message) => {
    say(message.payload)
    await supabase.removeAllChannels()
    process.exit(0)
  })
  .subscribe((status, err) => {
    if (status === 'SUBSCRIBED') say('SUBSCRIBED')
    else if (status !== 'CLOSED') {
      process.stderr.write(`subscribe failed: ${status} ${err ?? ''}\n`)
      process.exit(1)
    }
  })
