// The frontend's Supabase client as the browser app creates it, for node 20 (no global
// WebSocket, so `ws` is the transport). Shared by the scripts the Python tests run.
import { createClient } from '@supabase/supabase-js'
import WebSocket from 'ws'

export function frontendClient(url, key, realtime = {}) {
  return createClient(url, key, {
    auth: { persistSession: false, autoRefreshToken: false, detectSessionInUrl: false },
    realtime: { transport: WebSocket, ...realtime },
  })
}

// The same client for a signed-in user: `token` is the user's access token (a JWT), which
// supabase-js then hands to Realtime; '-' means nobody signed in (the anon key alone).
export function userClient(url, key, token, realtime = {}) {
  if (token === '-') return frontendClient(url, key, realtime)
  return createClient(url, key, {
    accessToken: async () => token,
    realtime: { transport: WebSocket, ...realtime },
  })
}

// Print one line for the parent process to read.
export function say(value) {
  process.stdout.write(`${typeof value === 'string' ? value : JSON.stringify(value)}\n`)
}

// Exit 1 after `seconds` unless the script finished first.
export function deadline(seconds, what) {
  const timer = setTimeout(() => {
    process.stderr.write(`timed out after ${seconds}s waiting for ${what}\n`)
    process.exit(1)
  }, seconds * 1000)
  timer.unref()
  return timer
}
