// Calls one RPC as the inbox does, through supabase-js with a signed-in member's access token
// ('-': the anon key alone), and prints {"data": …, "error": {"code", "message"} | null}:
//
//   node member_rpc.mjs <supabase-url> <anon-key> <token|-> <function> <json arguments>
//
// e.g. send_message {"p_conversation_id": "…", "p_text": "Hola, soy Laura"}
import { userClient, say, deadline } from './client.mjs'

const [url, key, token, fn, args] = process.argv.slice(2)
deadline(20, `the ${fn} call`)

const supabase = userClient(url, key, token)
const { data, error } = await supabase.rpc(fn, JSON.parse(args))
say({ data, error: error ? { code: error.code, message: error.message } : null })
process.exit(0)
