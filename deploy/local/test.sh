#!/usr/bin/env bash
# Herald's tests, as CI runs them (`bash .ci/run` execs this):
#   bash deploy/local/test.sh
# Makes RabbitMQ, Redis and PostgreSQL answer (deploy/local/services.sh), then
# runs every test of the workspace: with cargo-nextest when it is installed,
# else with cargo test. Exits non-zero when anything fails. Needs no terminal.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"

if ! command -v cargo >/dev/null 2>&1 && [ -f "$HOME/.cargo/env" ]; then
    # shellcheck disable=SC1091
    . "$HOME/.cargo/env"
fi

echo "==> Services (RabbitMQ, Redis, PostgreSQL)"
bash "$ROOT/deploy/local/services.sh" </dev/null

export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
if cargo nextest --version >/dev/null 2>&1; then
    echo "==> cargo nextest run --workspace"
    cargo nextest run --workspace --no-fail-fast </dev/null
else
    echo "==> cargo test --workspace --all-targets"
    cargo test --workspace --all-targets --no-fail-fast </dev/null
fi
