#!/usr/bin/env bash
# stack_test: tools/stack as a new user runs it, on free ports and a private
# state folder: up brings everything up healthy, a second up is a no-op,
# status reports health, down leaves no process of ours running.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
free_port=$1
export CC_BUILD_DIR=$2
export CC_VAR_DIR=$(mktemp -d /tmp/cc-stack-test-XXXXXX)
chmod 755 "$CC_VAR_DIR"
ports=($("$free_port" 13))
pg=${ports[0]} redis=${ports[1]} pub=${ports[2]} sub=${ports[3]} admin=${ports[4]}
# Every service's ports move too, so a user's running stack is never touched.
export ACD_ADMIN_PORT=${ports[5]} ACD_RPC=tcp://127.0.0.1:${ports[6]}
export GATEWAY_ADMIN_PORT=${ports[7]} GATEWAY_SIP_PORT=${ports[8]}
export GATEWAY_RPC=tcp://127.0.0.1:${ports[9]} ACD_GATEWAY_RPC=tcp://127.0.0.1:${ports[9]} GATEWAY_ACD_RPC=$ACD_RPC
export ORDER_SYNC_ADMIN_PORT=${ports[10]} ORDER_SYNC_HTTP_PORT=${ports[11]} ORDER_SYNC_RPC=tcp://127.0.0.1:${ports[12]}
mkdir -p "$CC_VAR_DIR/recordings"
export GATEWAY_RECORDINGS_DIR=$CC_VAR_DIR/recordings
rtp=$(( 50000 + ($$ % 50) * 200 ))
export GATEWAY_RTP_MIN=$rtp GATEWAY_RTP_MAX=$(( rtp + 199 ))
export DATABASE_URL=postgresql://callcenter@127.0.0.1:$pg/callcenter
export REDIS_URL=redis://127.0.0.1:$redis/0
export CC_BUS_PUB=tcp://127.0.0.1:$pub CC_BUS_SUB=tcp://127.0.0.1:$sub FORWARDER_ADMIN_PORT=$admin
cleanup() { "$root/tools/stack" down >/dev/null 2>&1 || true; rm -rf "$CC_VAR_DIR"; }
trap cleanup EXIT
fail() { echo "stack_test: FAILED: $*" >&2; exit 1; }

out=$("$root/tools/stack" up 2>&1) || fail "up: $out"
echo "$out"
grep -q "forwarder: started" <<<"$out" || fail "forwarder not started"
grep -q "acd: started" <<<"$out" || fail "acd not started"
grep -q "gateway: started" <<<"$out" || fail "gateway not started"
grep -q "order-sync: started" <<<"$out" || fail "order-sync not started"
grep -q "demo: loaded acd.sql" <<<"$out" || fail "demo floor not loaded"
grep -q "demo: loaded shop-catalog.sql" <<<"$out" || fail "demo shop catalogue not loaded"
grep -q "platform     1 applied" <<<"$out" || fail "migrations not applied"

status=$("$root/tools/stack" status) || fail "status not healthy: $status"
echo "$status"
grep -q '"status":"ok"' <<<"$status" || fail "forwarder health"
psql -h 127.0.0.1 -p "$pg" -U callcenter -d callcenter -tAc \
  "SELECT count(*) FROM pg_namespace WHERE nspname IN ('telephony','acd','commerce','desk')" | grep -qx 4 \
  || fail "schemas missing"

# The demo floor works: an agent logs in and is offered a call; the gateway
# has no such call (it was made up by acdctl, not dialled) and says so
# (call_gone): the call leaves as an abandon, the agent stays ready.
"$root/tools/acd" login 1001 || fail "acd login"
"$root/tools/acd" enqueue demo-call-1 sales || fail "enqueue"
for _ in $(seq 1 50); do
  "$root/tools/acd" status | grep -q 'demo-call-1' || break
  sleep 0.1
done
"$root/tools/acd" status | grep -E '^sales +0 +[0-9.]+ +1 ' || fail "the made-up call did not leave sales, 1001 ready"
"$root/tools/acd" status | grep -E '^1001 +ready ' || fail "1001 is not ready after the gateway refused a call it has not"

# A test call: SIPp with RTP and a digit; what it heard lands in a WAV.
call=$("$root/tools/call" 300 1) || fail "tools/call: $call"
echo "$call"
wav=$(sed -n 's/^saved //p' <<<"$call")
[ -s "$wav" ] && [ "$(stat -c %s "$wav")" -gt 8000 ] || fail "no recording of what the caller heard ($wav)"

again=$("$root/tools/stack" up 2>&1) || fail "second up: $again"
grep -q "already running" <<<"$again" || fail "second up was not a no-op: $again"

pids=$(cat "$CC_VAR_DIR"/run/*.pid; head -1 "$CC_VAR_DIR"/pg/postmaster.pid)
"$root/tools/stack" down
for pid in $pids; do
  if kill -0 "$pid" 2>/dev/null && ! grep -q '^State:.*Z' "/proc/$pid/status" 2>/dev/null; then
    fail "pid $pid still running after down"
  fi
done
if "$root/tools/stack" status >/dev/null 2>&1; then fail "status says healthy after down"; fi
echo "stack_test: 1 passed, 0 failed"
