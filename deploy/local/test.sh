#!/usr/bin/env bash
# Herald's test command, as CI runs it (`bash .ci/run` execs this):
#   bash deploy/local/test.sh
# Checks what a reviewer checks, cheapest first:
#   1. checks  cargo fmt --check; deploy/validate.sh (compose, Kubernetes,
#              KEDA, shellcheck); cargo deny (licenses, bans, sources, and
#              advisories when the RustSec database can be had). All three
#              run, then the script stops if any failed.
#   2. clippy  cargo clippy --workspace --all-targets -- -D warnings; stops
#              here if it fails.
#   3. tests   makes RabbitMQ, Redis and PostgreSQL answer
#              (deploy/local/services.sh), checks the HTTP API against its
#              own /openapi.json (deploy/local/api-check.sh: schemathesis
#              with every check, tenant key and admin token), then every
#              test of the workspace: cargo nextest when it is installed,
#              else cargo test.
# Installs what it needs (cargo-deny from crates.io, once; validate.sh's and
# api-check.sh's own tools). Needs no terminal; exits non-zero when anything fails.
#
# Environment:
#   HERALD_TEST_CHECKS_ONLY=1  phases 1 and 2 only: no services, no tests
#   HERALD_TEST_SKIP_CHECKS=1  phase 3 only (while iterating on a test;
#                              CI never sets it)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"

if ! command -v cargo >/dev/null 2>&1 && [ -f "$HOME/.cargo/env" ]; then
    # shellcheck disable=SC1091
    . "$HOME/.cargo/env"
fi
command -v cargo >/dev/null 2>&1 || {
    echo "test.sh: cargo was not found: run bash deploy/local/services.sh for how to install Rust" >&2
    exit 1
}

export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
# cargo-deny's version is pinned: its configuration keys and flags change
# between releases (deny.toml is written for this one).
DENY_VERSION="0.20.2"

START=$SECONDS
step() { printf '\n==> %s\n' "$*"; }
took() { printf '    (%ss)\n' "$((SECONDS - $1))"; }

FAILED=()

check_fmt() {
    step "cargo fmt --all -- --check"
    local t=$SECONDS
    if cargo fmt --all -- --check </dev/null; then
        echo "fmt: OK"
    else
        echo "fmt: the files above are not formatted: run cargo fmt --all"
        FAILED+=("fmt")
    fi
    took "$t"
}

check_deploy() {
    step "bash deploy/validate.sh"
    local t=$SECONDS
    if ! bash "$ROOT/deploy/validate.sh" </dev/null; then
        FAILED+=("deploy/validate.sh")
    fi
    took "$t"
}

ensure_cargo_deny() {
    local have
    have=$(cargo deny --version 2>/dev/null || true)
    if [ "$have" = "cargo-deny $DENY_VERSION" ]; then
        return 0
    fi
    echo "cargo-deny: ${have:-not installed}; installing $DENY_VERSION from crates.io (once, a few minutes)"
    local logf
    logf=$(mktemp)
    if ! cargo install --locked --quiet "cargo-deny@$DENY_VERSION" </dev/null >"$logf" 2>&1; then
        tail -n 30 "$logf"
        rm -f "$logf"
        echo "cargo-deny: cargo install failed (above)"
        return 1
    fi
    rm -f "$logf"
}

# The RustSec advisory database is a git repository on GitHub. When it can be
# fetched, or a copy is already in cargo-deny's db-path, advisories are
# checked offline against it; otherwise the run says so and goes on: it never
# reports advisories as checked when they were not.
advisory_db_present() {
    local d
    for d in "${CARGO_HOME:-$HOME/.cargo}"/advisory-dbs/advisory-db-*/; do
        if [ -d "$d/crates" ]; then
            DB_DATE=$(git -C "$d" log -1 --format=%cs 2>/dev/null || echo "an unknown date")
            return 0
        fi
    done
    return 1
}

check_deny() {
    step "cargo deny check (licenses, bans, sources, advisories)"
    local t=$SECONDS
    if ! ensure_cargo_deny; then
        FAILED+=("cargo deny (not installed)")
        took "$t"
        return
    fi
    if cargo deny --log-level error check --hide-inclusion-graph licenses bans sources </dev/null; then
        echo "cargo deny: licenses, bans, sources OK (duplicate versions are warnings: cargo deny check bans lists them)"
    else
        echo "cargo deny: findings above (policy and reasons in deny.toml)"
        FAILED+=("cargo deny (licenses/bans/sources)")
    fi
    # cargo-deny's fetch says nothing and exits 0 when a copy exists but the
    # network is down, so what counts is the copy's own date.
    local DB_DATE=""
    timeout 120 cargo deny --log-level off fetch db </dev/null >/dev/null 2>&1 || true
    if advisory_db_present; then
        echo "cargo deny: checking advisories against the RustSec database as of $DB_DATE"
        if cargo deny --offline check --hide-inclusion-graph advisories </dev/null; then
            echo "cargo deny: advisories OK"
        else
            echo "cargo deny: advisories found (above): upgrade the crate, or ignore the id in deny.toml with a reason"
            FAILED+=("cargo deny (advisories)")
        fi
    else
        echo "cargo deny: ADVISORIES NOT CHECKED: the RustSec advisory database (github.com/rustsec/advisory-db) is unreachable from this machine and no copy is in ${CARGO_HOME:-$HOME/.cargo}/advisory-dbs"
    fi
    took "$t"
}

check_clippy() {
    # The same profile and flags as the test build below (no RUSTFLAGS; `-D
    # warnings` reaches clippy only, for workspace crates), so build scripts
    # and proc-macros compiled here are reused by the tests. Dependencies
    # are checked (metadata only) here and compiled there: cargo cannot share
    # those two.
    step "cargo clippy --workspace --all-targets -- -D warnings"
    local t=$SECONDS
    if ! cargo clippy --workspace --all-targets --quiet </dev/null -- -D warnings; then
        took "$t"
        echo
        echo "test.sh: FAILED: clippy (above); cargo clippy --fix --workspace --all-targets fixes some"
        exit 1
    fi
    echo "clippy: OK"
    took "$t"
}

# The test runner's summary is the last thing printed (CI reads it).
run_tests() {
    step "Services (RabbitMQ, Redis, PostgreSQL)"
    bash "$ROOT/deploy/local/services.sh" </dev/null
    echo "(checks took $((SECONDS - START))s)"
    if [ "${HERALD_TEST_SKIP_CHECKS:-}" != "1" ]; then
        step "API against /openapi.json (deploy/local/api-check.sh: schemathesis)"
        bash "$ROOT/deploy/local/api-check.sh" </dev/null
    fi
    if cargo nextest --version >/dev/null 2>&1; then
        step "cargo nextest run --workspace"
        cargo nextest run --workspace --no-fail-fast </dev/null
    else
        step "cargo test --workspace --all-targets"
        cargo test --workspace --all-targets --no-fail-fast </dev/null
    fi
}

if [ "${HERALD_TEST_SKIP_CHECKS:-}" != "1" ]; then
    check_fmt
    check_deploy
    check_deny
    if [ "${#FAILED[@]}" -gt 0 ]; then
        echo
        echo "test.sh: FAILED before building: ${FAILED[*]} (each one's findings are above)"
        exit 1
    fi
    check_clippy
fi

if [ "${HERALD_TEST_CHECKS_ONLY:-}" = "1" ]; then
    echo
    echo "test.sh: checks passed in $((SECONDS - START))s (HERALD_TEST_CHECKS_ONLY=1: no tests run)"
    exit 0
fi

run_tests
