// A member works the inbox as the browser app does, through supabase-js: signs in with a
// password, reads one conversation's messages, marks it read, asks who is signed in, refreshes
// the session and reads again. Prints one JSON line per step:
//
//   node member_inbox.mjs <supabase-url> <anon-key> <email> <password> <conversation-id>
//
// {"step": "...", "data": …, "error": {"code", "message", "status"} | null}
import { frontendClient, say, deadline } from './client.mjs'

const [url, key, email, password, conversationId] = process.argv.slice(2)
deadline(30, 'the inbox session')

const supabase = frontendClient(url, key)

function report(step, data, error) {
  say({
    step,
    data: data ?? null,
    error: error ? { code: error.code ?? null, message: error.message, status: error.status ?? null } : null,
  })
}

const signIn = await supabase.auth.signInWithPassword({ email, password })
const firstSession = signIn.data.session
report(
  'sign_in',
  firstSession && {
    user_id: signIn.data.user.id,
    email: signIn.data.user.email,
    token_type: firstSession.token_type,
    expires_in: firstSession.expires_in,
    session_id: JSON.parse(Buffer.from(firstSession.access_token.split('.')[1], 'base64url'))
      .session_id,
  },
  signIn.error,
)
if (signIn.error) process.exit(0)

const messages = await supabase
  .from('messages')
  .select('*')
  .eq('conversation_id', conversationId)
  .order('timestamp', { ascending: true })
report('messages', messages.data && messages.data.map((m) => m.wamid), messages.error)

const embedded = await supabase
  .from('messages')
  .select('wamid, conversations(id, contacts(name))')
  .eq('conversation_id', conversationId)
  .order('timestamp', { ascending: true })
  .limit(1)
  .maybeSingle()
report('embedded', embedded.data, embedded.error)

const marked = await supabase
  .from('conversations')
  .update({ is_read: true, unread_count: 0 })
  .eq('id', conversationId)
  .select('id, is_read, unread_count')
report('update', marked.data, marked.error)

const user = await supabase.auth.getUser()
report('get_user', user.data.user && { id: user.data.user.id, email: user.data.user.email }, user.error)

const refreshed = await supabase.auth.refreshSession()
const secondSession = refreshed.data.session
report(
  'refresh',
  secondSession && {
    user_id: refreshed.data.user.id,
    new_access_token: secondSession.access_token !== firstSession.access_token,
    new_refresh_token: secondSession.refresh_token !== firstSession.refresh_token,
  },
  refreshed.error,
)

const again = await supabase.from('conversations').select('id').eq('id', conversationId)
report('read_after_refresh', again.data, again.error)

const signedOut = await supabase.auth.signOut()
report('sign_out', null, signedOut.error)
process.exit(0)
