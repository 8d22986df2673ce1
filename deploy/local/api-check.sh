#!/usr/bin/env bash
# The HTTP API against its own OpenAPI document: schemathesis (PyPI) with
# every check, with a tenant's API key (the messages and templates routes)
# and with the admin token (the admin routes), against a producer of this build
# (target/debug/herald-producer) on free ports, a fresh database and a random
# HERALD_NAMESPACE. Exits non-zero on any finding: an undocumented status, a
# schema-valid request refused, a schema-violating one accepted, a response
# outside its schema, a server error. Left out: PATCH /v1/admin/providers/{id},
# whose config is checked against the stored provider's kind, which a generator
# cannot know (services/producer/tests/api.rs covers that rule).
#
#   bash deploy/local/api-check.sh           # test.sh runs it before the tests
#   HERALD_API_CHECK_EXAMPLES=200 bash deploy/local/api-check.sh
#
# Needs RabbitMQ, Redis and PostgreSQL answering (deploy/local/services.sh).
# Installs schemathesis into a venv under ~/.cache/herald once.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
SCHEMATHESIS_VERSION="4.32.5"
TOOLS_DIR="${HERALD_API_CHECK_TOOLS:-$HOME/.cache/herald/api-check}"
EXAMPLES="${HERALD_API_CHECK_EXAMPLES:-50}"
PY="$TOOLS_DIR/bin/python"

log() { echo "api-check: $*"; }
die() { echo "api-check: FAILED: $*" >&2; exit 1; }

if [ ! -x "$TOOLS_DIR/bin/schemathesis" ] ||
    [ "$(cat "$TOOLS_DIR/.version" 2>/dev/null || true)" != "$SCHEMATHESIS_VERSION" ]; then
    log "installing schemathesis $SCHEMATHESIS_VERSION into $TOOLS_DIR"
    rm -rf "$TOOLS_DIR"
    mkdir -p "$(dirname "$TOOLS_DIR")"
    if ! python3 -m venv "$TOOLS_DIR" >/dev/null 2>&1; then
        rm -rf "$TOOLS_DIR"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
        python3 -m venv "$TOOLS_DIR" || die "python3 -m venv failed"
    fi
    "$PY" -m pip install --quiet "schemathesis==$SCHEMATHESIS_VERSION" ||
        die "pip could not install schemathesis"
    printf '%s' "$SCHEMATHESIS_VERSION" >"$TOOLS_DIR/.version"
fi

log "building herald-producer (debug)"
cargo build --quiet -p herald-producer --bin herald-producer </dev/null
PRODUCER="${CARGO_TARGET_DIR:-$ROOT/target}/debug/herald-producer"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
SUFFIX="$(python3 -c 'import uuid; print(uuid.uuid4().hex[:12])')"
NAMESPACE="apicheck_$SUFFIX"
DATABASE="herald_$NAMESPACE"
HTTP_PORT="$(free_port)"
GRPC_PORT="$(free_port)"
TOKEN="$(python3 -c 'import secrets; print(secrets.token_hex(16))')"
BASE="http://127.0.0.1:$HTTP_PORT"
LOG="$(mktemp)"
SCRATCH="$(mktemp -d)"

cleanup() {
    if [ -n "${PID:-}" ]; then kill "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; fi
    psql -q -h 127.0.0.1 -U postgres -d postgres -c "DROP DATABASE IF EXISTS \"$DATABASE\"" >/dev/null 2>&1 || true
    if command -v rabbitmqctl >/dev/null 2>&1; then
        rabbitmqctl -q list_queues name 2>/dev/null | grep "^$NAMESPACE" |
            while read -r queue; do rabbitmqctl -q delete_queue "$queue" >/dev/null 2>&1 || true; done
        rabbitmqctl -q list_exchanges name 2>/dev/null | grep "^$NAMESPACE" |
            while read -r exchange; do rabbitmqctl -q eval "rabbit_exchange:delete(rabbit_misc:r(<<\"/\">>, exchange, <<\"$exchange\">>), false, <<\"api-check\">>)." >/dev/null 2>&1 || true; done
    fi
    rm -rf "$LOG" "$SCRATCH"
}
trap cleanup EXIT

HERALD_NAMESPACE="$NAMESPACE" \
HERALD_DATABASE_URL="postgres://postgres@127.0.0.1:5432/$DATABASE" \
HERALD_HTTP_ADDR="127.0.0.1:$HTTP_PORT" \
HERALD_GRPC_ADDR="127.0.0.1:$GRPC_PORT" \
HERALD_ADMIN_TOKEN="$TOKEN" \
RUST_LOG=warn \
    "$PRODUCER" >"$LOG" 2>&1 </dev/null &
PID=$!
for _ in $(seq 1 100); do
    curl -fsS "$BASE/readyz" >/dev/null 2>&1 && break
    kill -0 "$PID" 2>/dev/null || { cat "$LOG"; die "the producer exited"; }
    sleep 0.2
done
curl -fsS "$BASE/readyz" >/dev/null || { cat "$LOG"; die "the producer never became ready"; }

admin() { curl -fsS -H "Authorization: Bearer $TOKEN" -H 'content-type: application/json' "$@"; }
json_field() { python3 -c "import json,sys; print(json.load(sys.stdin)[\"$1\"])"; }
TENANT_ID="$(admin -d '{"code":"apicheck","name":"API check"}' "$BASE/v1/admin/tenants" | json_field id)"
KEY="$(admin -X POST "$BASE/v1/admin/tenants/$TENANT_ID/keys" | json_field key)"
# A template per channel that prints no variable, for messages that name a
# template_id (the hooks put the one of the message's channel in its place).
template() { curl -fsS -H "Authorization: Bearer $KEY" -H 'content-type: application/json' -d "$1" "$BASE/v1/templates" | json_field id; }
TEMPLATE_EMAIL="$(template '{"name":"check-email","channel":"email","subject":"API check","text":"Hello{% if name %} {{ name }}{% endif %}"}')"
TEMPLATE_WEWORK="$(template '{"name":"check-wework","channel":"wework","text":"API check"}')"
TEMPLATE_WEBHOOK="$(template '{"name":"check-webhook","channel":"webhook","text":"API check"}')"

status=0
# A run that crashes inside schemathesis (its own "Test Execution Error",
# e.g. its link inference choking on a generated URL it cannot parse) says
# nothing about the API: it is tried again with the next seed, at most three
# times. A finding is never retried.
run() {
    local tag="$1" credential="$2" seed out attempt
    out="$(mktemp)"
    for attempt in 1 2 3; do
        seed=$((20261202 + attempt))
        log "schemathesis, every check, $tag routes ($EXAMPLES examples per operation, seed $seed)"
        # From a scratch directory: schemathesis keeps a cache where it runs.
        if (cd "$SCRATCH" && HERALD_CHECK_TENANT_ID="$TENANT_ID" \
            HERALD_CHECK_TEMPLATE_EMAIL="$TEMPLATE_EMAIL" HERALD_CHECK_TEMPLATE_WEWORK="$TEMPLATE_WEWORK" \
            HERALD_CHECK_TEMPLATE_WEBHOOK="$TEMPLATE_WEBHOOK" PYTHONPATH="${HERALD_API_CHECK_HOOKS_DIR:-$ROOT/deploy/local/api-check}" \
            SCHEMATHESIS_HOOKS="${HERALD_API_CHECK_HOOKS:-hooks}" "$TOOLS_DIR/bin/schemathesis" run "$BASE/openapi.json" \
            --checks all --include-tag "$tag" --max-examples "$EXAMPLES" --seed "$seed" \
            --exclude-operation-id update_provider \
            -H "Authorization: Bearer $credential" --no-color </dev/null >"$out" 2>&1); then
            cat "$out"
            rm -f "$out"
            return 0
        fi
        cat "$out"
        if grep -q "^Failures:" "$out" || ! grep -q "Test Execution Error" "$out"; then
            break
        fi
        log "schemathesis itself failed (not a finding); trying the next seed"
    done
    rm -f "$out"
    status=1
}
run messages "$KEY"
run templates "$KEY"
run suppressions "$KEY"
run webhooks "$KEY"
run admin "$TOKEN"
if [ "$status" -ne 0 ]; then
    die "schemathesis found the API and /openapi.json disagreeing (findings above)"
fi
log "OK: no findings"
