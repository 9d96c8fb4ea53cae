// The inbox page: everything goes through supabase-js as the CRM frontend's would, signed in as a
// workspace member, so Row Level Security decides what the page sees and may change.
const config = await (await fetch('config.json')).json()
const client = globalThis.supabase.createClient(config.url, config.anonKey)

const $ = (testid, root = document) => root.querySelector(`[data-testid="${testid}"]`)
const STATUS = {
  pending: 'pendiente', sending: 'enviando', sent: 'enviado', delivered: 'entregado',
  read: 'leído', played: 'reproducido', failed: 'falló', unknown: 'sin confirmar',
  skipped: 'omitido',
}
const CONVERSATION_COLUMNS =
  'id, workspace_id, contact_id, phone, profile_name, last_message_at, last_message_preview,' +
  ' unread_count, agent_conversational, bot_paused_until, contacts(name)'
const MESSAGE_COLUMNS =
  'id, conversation_id, direction, type, content, status, sent_by_agent, timestamp,' +
  ' received_seq, error_message'

const state = {
  conversations: new Map(), // id → row
  agentConfig: new Map(), // workspace id → {agent_enabled, typing_channel_private}
  selected: null, // conversation id
  messages: new Map(), // id → row of the selected conversation
  listChannel: null,
  conversationChannels: [],
  typingTimer: null,
}

function show(testid, text) {
  const el = $(testid)
  el.textContent = text ?? ''
  el.hidden = !text
}

function timeOf(iso) {
  if (!iso) return ''
  const date = new Date(iso)
  const today = new Date().toDateString() === date.toDateString()
  return today
    ? date.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' })
    : date.toLocaleDateString([], { day: 'numeric', month: 'short' })
}

// --- signing in and out ------------------------------------------------------------------------

async function start() {
  const { data } = await client.auth.getSession()
  if (data.session) await openInbox(data.session)
  else $('sign-in').hidden = false
}

$('sign-in-form').addEventListener('submit', async (event) => {
  event.preventDefault()
  const form = new FormData(event.target)
  show('sign-in-error', '')
  const { data, error } = await client.auth.signInWithPassword({
    email: form.get('email'),
    password: form.get('password'),
  })
  if (error) return show('sign-in-error', error.message)
  $('sign-in').hidden = true
  await openInbox(data.session)
})

$('sign-out').addEventListener('click', async () => {
  await client.removeAllChannels()
  await client.auth.signOut()
  location.reload()
})

async function openInbox(session) {
  // Realtime checks RLS with the member's token, not the anon key.
  await client.realtime.setAuth(session.access_token)
  $('signed-in-as').textContent = session.user.user_metadata?.full_name ?? session.user.email
  $('inbox').hidden = false
  const settings = await client
    .from('workspace_agent_config')
    .select('workspace_id, agent_enabled, typing_channel_private')
  for (const row of settings.data ?? []) state.agentConfig.set(row.workspace_id, row)
  await loadConversations()
  watchConversations()
}

// --- the conversations list --------------------------------------------------------------------

async function loadConversations() {
  const { data, error } = await client
    .from('conversations')
    .select(CONVERSATION_COLUMNS)
    .order('last_message_at', { ascending: false })
  if (error) return show('conversation-error', error.message)
  for (const row of data) state.conversations.set(row.id, row)
  renderConversations()
}

function watchConversations() {
  const list = $('conversations')
  const onChange = async ({ new: row }) => {
    const known = state.conversations.get(row.id)
    // A change carries the row alone: the contact's name is embedded from the table.
    let contacts = known?.contacts ?? null
    if (row.contact_id && row.contact_id !== known?.contact_id) {
      const { data } = await client.from('contacts').select('name').eq('id', row.contact_id)
      contacts = data?.[0] ?? null
    }
    state.conversations.set(row.id, { ...row, contacts })
    renderConversations()
    if (row.id === state.selected) renderConversationHead()
  }
  state.listChannel = client
    .channel('inbox:conversations')
    .on('postgres_changes', { event: 'INSERT', schema: 'public', table: 'conversations' }, onChange)
    .on('postgres_changes', { event: 'UPDATE', schema: 'public', table: 'conversations' }, onChange)
    .subscribe((status) => { list.dataset.live = String(status === 'SUBSCRIBED') })
}

function displayName(row) {
  return row.contacts?.name || row.profile_name || row.phone || 'Sin nombre'
}

function renderConversations() {
  const rows = [...state.conversations.values()].sort((a, b) =>
    (b.last_message_at ?? '').localeCompare(a.last_message_at ?? ''))
  const list = $('conversations')
  list.replaceChildren(...rows.map(conversationItem))
  $('no-conversations').hidden = rows.length > 0
}

function conversationItem(row) {
  const item = document.createElement('li')
  item.dataset.testid = 'conversation'
  item.dataset.id = row.id
  item.classList.toggle('selected', row.id === state.selected)
  const field = (testid, cls, text) => {
    const el = document.createElement('span')
    Object.assign(el, { className: cls, textContent: text })
    el.dataset.testid = testid
    return el
  }
  item.append(
    field('conversation-item-name', 'name', displayName(row)),
    field('conversation-item-time', 'time', timeOf(row.last_message_at)),
    field('conversation-item-preview', 'preview', row.last_message_preview ?? row.phone ?? ''),
  )
  if (row.unread_count > 0) item.append(field('unread', 'unread', String(row.unread_count)))
  item.addEventListener('click', () => selectConversation(row.id))
  return item
}

// --- the open conversation ---------------------------------------------------------------------

async function selectConversation(id) {
  for (const channel of state.conversationChannels) await client.removeChannel(channel)
  state.conversationChannels = []
  state.selected = id
  state.messages = new Map()
  setTyping(false)
  const pane = $('conversation-pane')
  delete pane.dataset.messagesLive
  delete pane.dataset.typingLive
  delete pane.dataset.loaded
  pane.querySelector('.open').hidden = false
  $('no-selection').hidden = true
  show('reply-error', '')
  show('conversation-error', '')
  renderConversations()
  renderConversationHead()
  watchMessages(id)
  watchTyping(id)
  const { data, error } = await client
    .from('messages')
    .select(MESSAGE_COLUMNS)
    .eq('conversation_id', id)
    .order('timestamp', { ascending: false })
    .order('received_seq', { ascending: false })
    .limit(200)
  if (id !== state.selected) return
  if (error) return show('conversation-error', error.message)
  for (const row of data) state.messages.set(row.id, row)
  renderMessages()
  pane.dataset.loaded = id
  // Opening the conversation reads it.
  if (state.conversations.get(id)?.unread_count > 0) {
    await client.from('conversations').update({ is_read: true, unread_count: 0 }).eq('id', id)
  }
}

function renderConversationHead() {
  const row = state.conversations.get(state.selected)
  if (!row) return
  $('conversation-name').textContent = displayName(row)
  $('conversation-phone').textContent = row.phone ?? ''
  const toggle = $('bot-toggle')
  toggle.value = row.agent_conversational === null ? 'inherit' : row.agent_conversational ? 'on' : 'off'
  const enabled = state.agentConfig.get(row.workspace_id)?.agent_enabled
  toggle.options[0].textContent = `según el espacio (${enabled ? 'activado' : 'desactivado'})`
  const until = row.bot_paused_until
  const paused = until === 'infinity' || (until && new Date(until) > new Date())
  $('bot-paused').hidden = !paused
  $('bot-paused-text').textContent = !paused ? '' : until === 'infinity'
    ? 'Bot en pausa: un humano atiende hasta que se reanude.'
    : `Bot en pausa: un humano atiende hasta las ${new Date(until).toLocaleTimeString()}.`
}

$('bot-toggle').addEventListener('change', async (event) => {
  const value = { inherit: null, on: true, off: false }[event.target.value]
  const { error } = await client
    .from('conversations')
    .update({ agent_conversational: value })
    .eq('id', state.selected)
  show('conversation-error', error?.message)
})

$('resume-bot').addEventListener('click', async () => {
  const { error } = await client.rpc('resume_bot', { p_conversation_id: state.selected })
  show('conversation-error', error?.message)
})

function watchMessages(id) {
  const pane = $('conversation-pane')
  const onChange = ({ new: row }) => {
    if (row.conversation_id !== state.selected) return
    state.messages.set(row.id, { ...state.messages.get(row.id), ...row })
    renderMessages()
  }
  const filter = `conversation_id=eq.${id}`
  const changes = { schema: 'public', table: 'messages', filter }
  state.conversationChannels.push(
    client
      .channel(`inbox:messages:${id}`)
      .on('postgres_changes', { event: 'INSERT', ...changes }, onChange)
      .on('postgres_changes', { event: 'UPDATE', ...changes }, onChange)
      .subscribe((status) => { pane.dataset.messagesLive = String(status === 'SUBSCRIBED') }),
  )
}

function byTimeThenArrival(a, b) {
  const at = new Date(a.timestamp) - new Date(b.timestamp)
  return at !== 0 ? at : Number(a.received_seq) - Number(b.received_seq)
}

function renderMessages() {
  const list = $('messages')
  const rows = [...state.messages.values()].sort(byTimeThenArrival)
  list.replaceChildren(...rows.map(messageItem))
  list.scrollTop = list.scrollHeight
}

function messageItem(row) {
  const item = document.createElement('li')
  const author = row.direction === 'inbound' ? '' : row.sent_by_agent ? 'bot' : 'human'
  item.className = `msg ${row.direction} ${author} ${row.status ?? ''}`
  Object.assign(item.dataset, { testid: 'message', id: row.id, direction: row.direction })
  const body = document.createElement('div')
  body.className = 'body'
  body.dataset.testid = 'message-body'
  body.textContent = row.content?.body ?? `[${row.type}]`
  const meta = document.createElement('div')
  meta.className = 'meta'
  if (author) {
    const badge = document.createElement('span')
    badge.className = `badge ${author}`
    badge.dataset.testid = `${author}-badge`
    badge.textContent = author === 'bot' ? 'Bot' : 'Equipo'
    meta.append(badge)
  }
  const time = document.createElement('span')
  time.textContent = timeOf(row.timestamp)
  meta.append(time)
  if (row.direction === 'outbound' && row.status) {
    const status = document.createElement('span')
    status.className = 'status'
    Object.assign(status.dataset, { testid: 'message-status', status: row.status })
    status.textContent = STATUS[row.status] ?? row.status
    if (row.error_message) status.title = row.error_message
    meta.append(status)
  }
  item.append(body, meta)
  return item
}

// --- the bot's typing indicator ----------------------------------------------------------------

function watchTyping(id) {
  const pane = $('conversation-pane')
  const workspace = state.conversations.get(id)?.workspace_id
  // The worker broadcasts on the channel its workspace chose (public unless configured private).
  const isPrivate = state.agentConfig.get(workspace)?.typing_channel_private === true
  state.conversationChannels.push(
    client
      .channel(`conversation:${id}`, { config: { private: isPrivate } })
      .on('broadcast', { event: 'typing' }, ({ payload }) => {
        if (id !== state.selected || payload?.source !== 'agent') return
        setTyping(payload.isTyping === true, payload.expiresAt)
      })
      .subscribe((status) => { pane.dataset.typingLive = String(status === 'SUBSCRIBED') }),
  )
}

// A START carries `expiresAt`: the indicator goes away then even if the STOP never comes (a
// worker that died mid-turn).
function setTyping(isTyping, expiresAt) {
  clearTimeout(state.typingTimer)
  state.typingTimer = null
  $('typing-indicator').hidden = !isTyping
  if (isTyping) {
    const left = expiresAt ? new Date(expiresAt) - Date.now() : 30_000
    state.typingTimer = setTimeout(() => setTyping(false), Math.max(0, left))
  }
}

// --- replying ----------------------------------------------------------------------------------

$('reply-form').addEventListener('submit', async (event) => {
  event.preventDefault()
  const box = $('reply-text')
  const text = box.value
  show('reply-error', '')
  $('reply-send').disabled = true
  // The worker sends it; the row shows up through Postgres Changes.
  const { error } = await client.rpc('send_message', {
    p_conversation_id: state.selected,
    p_text: text,
  })
  $('reply-send').disabled = false
  if (error) return show('reply-error', error.message)
  box.value = ''
})

$('reply-text').addEventListener('keydown', (event) => {
  if (event.key === 'Enter' && !event.shiftKey) {
    event.preventDefault()
    $('reply-form').requestSubmit()
  }
})

await start()
