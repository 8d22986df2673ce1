#!/usr/bin/env bash
# Herald on this machine, in one command:
#   bash deploy/local/run.sh
# 1. makes RabbitMQ, Redis and PostgreSQL answer (deploy/local/services.sh);
# 2. builds every binary (cargo build --release --bins);
# 3. stops the Herald processes a previous run started, then starts the
#    provider simulator, the producer, the scheduler and two workers in the
#    background (logs in .herald/logs, pids in .herald/pids);
# 4. runs the demo load test (herald-loadtest demo): registers the
#    simulator as the providers, sends email, WeWork and webhook messages,
#    waits for them and prints throughput, latency, losses and duplicates.
# Everything keeps running afterwards; bash deploy/local/stop.sh stops it.
#
# Environment: HERALD_DEMO_EMAILS (3000), HERALD_DEMO_WEWORK (500),
# HERALD_DEMO_WEBHOOKS (500), HERALD_DEMO_TIMEOUT_SECS (300),
# HERALD_READY_WAIT_SECS (60), HERALD_SIM_WEBHOOK_SECRET (the simulator's
# and the demo's webhook signing secret; both default to the same one),
# HERALD_BUILD_PROFILE (release; "debug" builds faster, runs slower),
# HERALD_SKIP_BUILD=1 (use the binaries already built), and the
# services' own HERALD_AMQP_URL, HERALD_REDIS_URL, HERALD_DATABASE_URL,
# HERALD_NAMESPACE, RUST_LOG.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"

STATE="$ROOT/.herald"
LOGS="$STATE/logs"
PIDS="$STATE/pids"
SIM_DIR="$STATE/sim"
PROFILE="${HERALD_BUILD_PROFILE:-release}"
case "$PROFILE" in
    release) BUILD_ARGS=(--release) ;;
    debug) BUILD_ARGS=() ;;
    *) echo "run.sh: HERALD_BUILD_PROFILE must be release or debug" >&2; exit 2 ;;
esac
BIN="$ROOT/target/$PROFILE"
READY_WAIT="${HERALD_READY_WAIT_SECS:-60}"
EMAILS="${HERALD_DEMO_EMAILS:-3000}"
WEWORK="${HERALD_DEMO_WEWORK:-500}"
WEBHOOKS="${HERALD_DEMO_WEBHOOKS:-500}"

PRODUCER_ADDR=127.0.0.1:8080
GRPC_ADDR=127.0.0.1:50051
SCHEDULER_ADDR=127.0.0.1:8081
WORKER1_ADDR=127.0.0.1:8082
WORKER2_ADDR=127.0.0.1:8083
SIM_ADDR=127.0.0.1:8090
SIM_SMTP_ADDR=127.0.0.1:2525
SIM_SMTPS_ADDR=127.0.0.1:4650

step() { printf '\n==> %s\n' "$*"; }
die() { printf 'run.sh: error: %s\n' "$*" >&2; exit 1; }

if ! command -v cargo >/dev/null 2>&1 && [ -f "$HOME/.cargo/env" ]; then
    # shellcheck disable=SC1091
    . "$HOME/.cargo/env"
fi

step "Services (RabbitMQ, Redis, PostgreSQL)"
bash "$ROOT/deploy/local/services.sh"

if [ "${HERALD_SKIP_BUILD:-0}" = 1 ]; then
    step "Not building (HERALD_SKIP_BUILD=1): using $BIN"
else
    step "Building (cargo build ${BUILD_ARGS[*]} --bins)"
    cargo build "${BUILD_ARGS[@]}" --bins
fi
for b in herald-sim herald-producer herald-scheduler herald-worker herald-loadtest; do
    [ -x "$BIN/$b" ] || die "$BIN/$b was not built"
done

mkdir -p "$LOGS" "$PIDS" "$SIM_DIR"

step "Stopping what a previous run started"
bash "$ROOT/deploy/local/stop.sh" --force

# The admin token: made once, kept in .herald/admin-token.
TOKEN_FILE="$STATE/admin-token"
if [ ! -s "$TOKEN_FILE" ]; then
    (umask 077 && od -An -N24 -tx1 /dev/urandom | tr -d ' \n' >"$TOKEN_FILE")
    echo "Generated an admin token in .herald/admin-token"
fi
ADMIN_TOKEN="$(cat "$TOKEN_FILE")"

port_busy() {
    timeout 2 bash -c "exec 3<>/dev/tcp/${1%:*}/${1##*:}" 2>/dev/null
}
for addr in "$SIM_ADDR" "$SIM_SMTP_ADDR" "$SIM_SMTPS_ADDR" "$PRODUCER_ADDR" "$GRPC_ADDR" "$SCHEDULER_ADDR" "$WORKER1_ADDR" "$WORKER2_ADDR"; do
    if port_busy "$addr"; then
        die "$addr is already in use by a process run.sh did not start; stop it first (ss -ltnp | grep ${addr##*:})"
    fi
done

# start NAME BINARY [VAR=VALUE...] -- [ARGS...]: in the background, detached
# from this shell, with its log and pid file.
start() {
    local name=$1 bin=$2
    shift 2
    local envs=() args=()
    while [ "$#" -gt 0 ] && [ "$1" != "--" ]; do envs+=("$1"); shift; done
    [ "$#" -gt 0 ] && shift
    args=("$@")
    local log="$LOGS/$name.log"
    [ -f "$log" ] && mv -f "$log" "$log.1"
    nohup env RUST_LOG="${RUST_LOG:-info}" NO_COLOR=1 "${envs[@]}" "$BIN/$bin" "${args[@]}" >"$log" 2>&1 </dev/null &
    echo $! >"$PIDS/$name.pid"
    echo "started $name (pid $!, log .herald/logs/$name.log)"
}

# wait_ready NAME ADDR: until GET /readyz answers 2xx; on failure shows the log.
wait_ready() {
    local name=$1 addr=$2 pid deadline=$((SECONDS + READY_WAIT))
    pid=$(cat "$PIDS/$name.pid")
    until curl -fs -o /dev/null --max-time 2 "http://$addr/readyz"; do
        if ! kill -0 "$pid" 2>/dev/null; then
            echo "run.sh: $name exited before it was ready. The end of .herald/logs/$name.log:" >&2
            tail -n 40 "$LOGS/$name.log" >&2 || true
            exit 1
        fi
        if [ "$SECONDS" -ge "$deadline" ]; then
            echo "run.sh: $name was not ready at http://$addr/readyz within ${READY_WAIT} s. The end of .herald/logs/$name.log:" >&2
            tail -n 40 "$LOGS/$name.log" >&2 || true
            exit 1
        fi
        sleep 0.5
    done
    echo "$name is ready (http://$addr/readyz)"
}

step "Starting Herald"
# Return paths (VERP) at a local bounce domain, whose "MX" is the
# producer's bounce listener: the simulator mails its bounces and
# complaints there, as real mail systems would.
export HERALD_BOUNCE_DOMAIN="${HERALD_BOUNCE_DOMAIN:-bounces.herald.localhost}"
export HERALD_BOUNCE_SMTP_ADDR="${HERALD_BOUNCE_SMTP_ADDR:-127.0.0.1:2526}"
rm -f "$SIM_DIR/ca.pem"
start herald-sim herald-sim \
    HERALD_HTTP_ADDR="$SIM_ADDR" HERALD_SIM_SMTP_ADDR="$SIM_SMTP_ADDR" HERALD_SIM_SMTPS_ADDR="$SIM_SMTPS_ADDR" \
    -- --cert-dir "$SIM_DIR"
wait_ready herald-sim "$SIM_ADDR"
[ -s "$SIM_DIR/ca.pem" ] || die "the simulator did not write $SIM_DIR/ca.pem"

start herald-producer herald-producer HERALD_HTTP_ADDR="$PRODUCER_ADDR" HERALD_GRPC_ADDR="$GRPC_ADDR" HERALD_ADMIN_TOKEN="$ADMIN_TOKEN"
wait_ready herald-producer "$PRODUCER_ADDR"
start herald-scheduler herald-scheduler HERALD_HTTP_ADDR="$SCHEDULER_ADDR"
start herald-worker-1 herald-worker HERALD_HTTP_ADDR="$WORKER1_ADDR"
start herald-worker-2 herald-worker HERALD_HTTP_ADDR="$WORKER2_ADDR"
wait_ready herald-scheduler "$SCHEDULER_ADDR"
wait_ready herald-worker-1 "$WORKER1_ADDR"
wait_ready herald-worker-2 "$WORKER2_ADDR"

step "Demo: $EMAILS email + $WEWORK WeWork + $WEBHOOKS webhook messages through the simulator"
demo_status=0
HERALD_ADMIN_TOKEN="$ADMIN_TOKEN" "$BIN/herald-loadtest" demo \
    --producer-url "http://$PRODUCER_ADDR" \
    --sim-url "http://$SIM_ADDR" \
    --sim-ca-file "$SIM_DIR/ca.pem" \
    --emails "$EMAILS" \
    --wework "$WEWORK" \
    --webhooks "$WEBHOOKS" \
    --logs 'tail -f .herald/logs/*.log' \
    --timeout-secs "${HERALD_DEMO_TIMEOUT_SECS:-300}" || demo_status=$?

cat <<EOF

==> Herald is running (pids in .herald/pids)
  producer API      http://$PRODUCER_ADDR   (admin token: .herald/admin-token)
  producer gRPC     http://$GRPC_ADDR   (proto/herald/v1/enqueue.proto)
  scheduler         http://$SCHEDULER_ADDR/metrics
  workers           http://$WORKER1_ADDR/metrics  http://$WORKER2_ADDR/metrics
  simulator         http://$SIM_ADDR/sim/stats   (SMTP $SIM_SMTP_ADDR, SMTPS $SIM_SMTPS_ADDR, webhooks http://$SIM_ADDR/webhook/...)
  logs              tail -f .herald/logs/*.log
  list tenants      curl -H "Authorization: Bearer \$(cat .herald/admin-token)" http://$PRODUCER_ADDR/v1/admin/tenants
  run the demo again  bash deploy/local/run.sh   (or only the load: HERALD_ADMIN_TOKEN=\$(cat .herald/admin-token) target/$PROFILE/herald-loadtest demo --sim-ca-file .herald/sim/ca.pem)
  stop everything   bash deploy/local/stop.sh
EOF
if [ "$demo_status" -ne 0 ]; then
    echo "run.sh: the demo reported a problem (exit $demo_status); see above and .herald/logs/" >&2
fi
exit "$demo_status"
