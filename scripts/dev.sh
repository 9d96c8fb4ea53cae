#!/usr/bin/env bash
# The local stack in one terminal: the Supabase + WhatsApp stand-in on :54321, the webhook API on
# :8000 and one arq worker (Ctrl-C stops them all; if one dies the others are stopped too). Run
# through `make dev`, which first starts Postgres and Redis and applies the schema with the demo
# seed. The stand-in posts signed status webhooks for every reply back to the API, as Meta does.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -f .env ] || cp .env.example .env
set -a; . ./.env; set +a

UV=${UV:-uv}
DEVSTACK_PORT=${DEVSTACK_PORT:-54321}
BRIDGE_PORT=${BRIDGE_PORT:-8000}

pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; }
trap cleanup EXIT INT TERM

$UV run --frozen python -m devstack --port "$DEVSTACK_PORT" --database-url "$DATABASE_URL" \
  --whatsapp-webhook-url "http://127.0.0.1:$BRIDGE_PORT/webhooks/whatsapp" \
  --whatsapp-app-secret "$WHATSAPP_APP_SECRET" &
pids+=($!)
$UV run --frozen bridge serve --host 127.0.0.1 --port "$BRIDGE_PORT" &
pids+=($!)
$UV run --frozen arq jobs.worker.WorkerSettings &
pids+=($!)

echo "Supabase stand-in: http://127.0.0.1:$DEVSTACK_PORT   webhook API: http://127.0.0.1:$BRIDGE_PORT"
echo "Try: uv run python -m devstack.customer 'hola, cuánto cuesta?'  (replies: GET /whatsapp/_control/requests)"
wait -n "${pids[@]}"
