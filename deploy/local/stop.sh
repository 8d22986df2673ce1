#!/usr/bin/env bash
# Stops the Herald processes that deploy/local/run.sh started (their pids are
# in .herald/pids/): SIGTERM to each, then up to 30 s for all to exit.
#
# Usage: stop.sh [--force]   (--force: SIGKILL whatever is left after 30 s)
# Environment: HERALD_STOP_WAIT_SECS (default 30).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
PIDS="$ROOT/.herald/pids"
WAIT_SECS="${HERALD_STOP_WAIT_SECS:-30}"
FORCE=0
for arg in "$@"; do
    case "$arg" in
        --force) FORCE=1 ;;
        -h | --help) sed -n '2,7p' "$0"; exit 0 ;;
        *) echo "stop.sh: unknown argument $arg" >&2; exit 2 ;;
    esac
done

# Is $1 alive and still one of our binaries (not a recycled pid)?
ours() {
    local pid=$1 name=$2 cmd
    kill -0 "$pid" 2>/dev/null || return 1
    cmd=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null || true)
    case "$cmd" in
        *herald-*) return 0 ;;
        "") return 0 ;; # no /proc: trust the pid file
        *) echo "$name: pid $pid is now another program ($cmd); not touching it" >&2; return 1 ;;
    esac
}

shopt -s nullglob
files=("$PIDS"/*.pid)
if [ "${#files[@]}" -eq 0 ]; then
    echo "Nothing to stop (no pid files in .herald/pids)."
    exit 0
fi

declare -A waiting=()
for f in "${files[@]}"; do
    name=$(basename "$f" .pid)
    pid=$(tr -dc '0-9' <"$f" || true)
    if [ -z "$pid" ] || ! ours "$pid" "$name"; then
        echo "$name: was not running"
        rm -f "$f"
        continue
    fi
    kill -TERM "$pid" 2>/dev/null || true
    waiting[$name]=$pid
done

start=$SECONDS
while [ "${#waiting[@]}" -gt 0 ] && [ $((SECONDS - start)) -lt "$WAIT_SECS" ]; do
    for name in "${!waiting[@]}"; do
        pid=${waiting[$name]}
        if ! kill -0 "$pid" 2>/dev/null; then
            echo "$name: stopped (pid $pid, $((SECONDS - start)) s)"
            rm -f "$PIDS/$name.pid"
            unset "waiting[$name]"
        fi
    done
    [ "${#waiting[@]}" -gt 0 ] && sleep 0.2
done

status=0
for name in "${!waiting[@]}"; do
    pid=${waiting[$name]}
    if [ "$FORCE" -eq 1 ]; then
        kill -KILL "$pid" 2>/dev/null || true
        echo "$name: did not stop within ${WAIT_SECS} s; killed (pid $pid)"
        rm -f "$PIDS/$name.pid"
    else
        echo "$name: still running after ${WAIT_SECS} s (pid $pid); 'kill -KILL $pid' forces it" >&2
        status=1
    fi
done
exit "$status"
