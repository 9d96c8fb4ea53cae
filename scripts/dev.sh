#!/usr/bin/env bash
# The local stack in one terminal: the Supabase + WhatsApp stand-in on :54321 (DEVSTACK_PORT), the
# webhook API on :8000 (BRIDGE_PORT) and one arq worker. Each runs under a supervision loop that
# starts it again when it exits (after a pause that grows while it keeps dying within
# FAST_EXIT_SECONDS of starting); Ctrl-C or SIGTERM stops them all. Run through `make dev`, which
# first starts Postgres and Redis and applies the schema with the demo seed. The stand-in posts
# signed status webhooks for every reply back to the API, as Meta does. The logs are readable
# lines (BRIDGE_LOG_FORMAT=pretty unless set), routine ones quiet; once the stand-in and the API
# answer, a block says what to open and how to play the customer.
set -euo pipefail
cd "$(dirname "$0")/.."
# DEV_ENV_FILE: another file than .env (the tests' own; the processes still read ./.env for what
# neither it nor the environment sets).
ENV_FILE=${DEV_ENV_FILE:-.env}
[ -f "$ENV_FILE" ] || cp .env.example "$ENV_FILE"
# Variables already exported win over the file, as they do for the processes' own settings
# (`DATABASE_URL=... bash scripts/dev.sh`): the file is sourced, then the environment put back.
exported=$(export -p)
set -a; . "$ENV_FILE"; set +a
eval "$exported" 2>/dev/null || true

UV=${UV:-uv}
DEVSTACK_PORT=${DEVSTACK_PORT:-54321}
BRIDGE_PORT=${BRIDGE_PORT:-8000}
STAND_IN=http://127.0.0.1:$DEVSTACK_PORT
API=http://127.0.0.1:$BRIDGE_PORT
export BRIDGE_LOG_FORMAT=${BRIDGE_LOG_FORMAT:-pretty}

# follow_stand_in NAME PATH: NAME points at the stand-in on DEVSTACK_PORT, unless the environment
# sets it, or the env file sets it to anything but .env.example's stand-in on :54321.
follow_stand_in() {
  local name=$1 path=$2 example=http://127.0.0.1:54321
  [[ $exported == *"declare -x $name="* ]] && return
  local value=${!name:-$example$path}
  if [[ $value == "$example"* ]]; then
    printf -v "$name" '%s' "$STAND_IN${value#"$example"}"
  fi
  export "${name?}"
}
follow_stand_in SUPABASE_URL ""
follow_stand_in WHATSAPP_API_BASE_URL /whatsapp/v21.0

RESTART_PAUSE=1         # seconds before a process that exited is started again
MAX_RESTART_PAUSE=30    # the pause doubles up to this while the process keeps dying fast
FAST_EXIT_SECONDS=10    # an exit this soon after starting counts as dying fast
STOP_SECONDS=10         # how long a stopping process may take before it is killed
READY_SECONDS=30        # how long the start-up block waits for the stand-in and the API

log() { echo "dev: $*" >&2; }

# supervise NAME COMMAND...: runs COMMAND, and again whenever it exits, until SIGTERM. Each
# supervisor leads its own process group (`set -m` below), so stopping kills whatever COMMAND
# left behind too.
supervise() {
  local name=$1; shift
  local pause=$RESTART_PAUSE child="" started code
  trap 'stop_group "$child"' TERM
  while :; do
    started=$SECONDS
    "$@" &
    child=$!
    code=0; wait "$child" || code=$?
    if (( SECONDS - started < FAST_EXIT_SECONDS )); then
      pause=$(( pause * 2 > MAX_RESTART_PAUSE ? MAX_RESTART_PAUSE : pause * 2 ))
    else
      pause=$RESTART_PAUSE
    fi
    log "$name exited with code $code; restarting in ${pause}s"
    sleep "$pause" & wait $! || true   # in the background, so SIGTERM is handled at once
    log "$name restarting"
  done
}

# stop_group PID: SIGTERM the process group of this supervisor (uv passes it on to Python),
# wait up to STOP_SECONDS for PID, then SIGKILL whatever is left of the group.
stop_group() {
  trap '' TERM
  kill -TERM -- "-$BASHPID" 2>/dev/null || kill -TERM "$1" 2>/dev/null || true
  local waited=0
  while [ -n "$1" ] && kill -0 "$1" 2>/dev/null && (( waited < STOP_SECONDS * 10 )); do
    sleep 0.1; waited=$(( waited + 1 ))
  done
  if [ -n "$1" ] && kill -0 "$1" 2>/dev/null; then
    log "a process did not stop within ${STOP_SECONDS}s: killed"
    kill -KILL -- "-$BASHPID" 2>/dev/null || true
  fi
  exit 0
}

supervisors=()
stop_all() {
  trap - INT TERM EXIT
  kill -TERM "${supervisors[@]}" 2>/dev/null || true
  wait 2>/dev/null || true
}
trap 'stop_all; exit 130' INT
trap 'stop_all; exit 143' TERM
trap stop_all EXIT

# The stand-in writes the bridge's log lines, not bare text (devstack imports nothing of the
# bridge: logging is configured here, then it runs as `python -m devstack` would).
STAND_IN_LOGS='import runpy
from bridge import logs
from bridge.settings import Settings
settings = Settings()
logs.configure(settings.BRIDGE_LOG_LEVEL, settings.BRIDGE_LOG_FORMAT, "stand-in")
runpy.run_module("devstack", run_name="__main__", alter_sys=True)'

# Job control: each supervisor (and what it runs) in a process group of its own; Ctrl-C in the
# terminal reaches this script alone, which stops them in order.
set -m
supervise stand-in $UV run --frozen python -c "$STAND_IN_LOGS" --port "$DEVSTACK_PORT" \
  --database-url "$DATABASE_URL" \
  --whatsapp-webhook-url "$API/webhooks/whatsapp" \
  --whatsapp-app-secret "$WHATSAPP_APP_SECRET" &
supervisors+=($!)
supervise api $UV run --frozen bridge serve --host 127.0.0.1 --port "$BRIDGE_PORT" &
supervisors+=($!)
# arq's own start-up lines in the same format (its logging is configured before the worker's).
supervise worker $UV run --frozen arq --custom-log-dict bridge.logs.ARQ_LOG_CONFIG \
  jobs.worker.WorkerSettings &
supervisors+=($!)
set +m

answers() { curl -sf -o /dev/null --max-time 2 "$1" 2>/dev/null; }

# What a newcomer needs, once both servers answer (or after READY_SECONDS). The inbox page is
# listed only when the stand-in serves it.
start_up_block() {
  local tries=0 inbox="" customer="$UV run python -m devstack.customer"
  until answers "$STAND_IN/health" && answers "$API/healthz"; do
    if (( tries >= READY_SECONDS * 5 )); then
      log "the stand-in or the API did not answer within ${READY_SECONDS}s: see the lines above"
      break
    fi
    sleep 0.2; tries=$(( tries + 1 ))
  done
  if answers "$STAND_IN/inbox/"; then
    inbox="  inbox page   $STAND_IN/inbox/"$'\n'
  fi
  local demo="$UV run bridge demo"
  [ "$BRIDGE_PORT" = 8000 ] || customer+=" --bridge-url $API"
  [ "$BRIDGE_PORT" = 8000 ] || demo+=" --bridge-url $API"
  [ "$DEVSTACK_PORT" = 54321 ] || demo="SUPABASE_URL=$STAND_IN $demo"
  cat <<BLOCK

wa-agent-bridge, local stack
  webhook API  $API  (POST /webhooks/whatsapp, /healthz, /readyz, /metrics)
  stand-in     $STAND_IN  (Supabase API, WhatsApp Cloud API)
${inbox}Watch a whole conversation, in another terminal:
  $demo
Play the customer yourself:
  $customer 'hola, cuánto cuesta?'
  curl -s '$STAND_IN/whatsapp/_control/requests?kind=send'   # what the bot sent
Logs: a line per event; BRIDGE_LOG_LEVEL=DEBUG also shows the routine ones (crons, health).
Stop: Ctrl-C.

BLOCK
}
if command -v curl >/dev/null; then
  start_up_block
else
  log "API $API, stand-in $STAND_IN (install curl for the start-up block)"
fi
wait
